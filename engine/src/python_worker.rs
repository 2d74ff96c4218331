//! The process a function written in Python runs in (`python_worker/worker.py`, started with
//! `FERRIS_PYTHON`, else `python3`, which needs pyarrow), as Spark's and Flink's Python
//! functions do: the server stays one binary without Python inside, and a function that
//! crashes takes only its worker down (started again at the next call). Batches cross as
//! Arrow IPC streams over the worker's stdin and stdout. Calls of one function wait for each
//! other: one worker serves them. A call blocks its thread, which on a runtime of several
//! threads hands its other tasks to the others first (`block_in_place`).

use std::hash::{Hash, Hasher};
use std::io::{BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result};

use crate::sql_function::Parameter;

/// The worker's code.
const WORKER: &str = include_str!("python_worker/worker.py");
/// Where the Python with pyarrow is.
const PYTHON_ENV: &str = "FERRIS_PYTHON";

/// A function written in Python, as its statement declares it.
#[derive(Debug, Clone)]
pub struct PythonDefinition {
    /// What queries call it.
    pub name: String,
    pub parameters: Vec<Parameter>,
    pub returns: DataType,
    /// Python code that defines a function of its name.
    pub code: String,
    /// The statement that made it.
    pub statement: String,
}

impl PythonDefinition {
    /// Its parameters' types, and its code to be called as `shape`: refused without a
    /// parameter.
    pub fn load(
        &self,
        shape: CallShape,
    ) -> std::result::Result<(Vec<DataType>, PythonCode), String> {
        if self.parameters.is_empty() {
            let kind = match shape {
                CallShape::Scalar => "function",
                CallShape::Aggregate => "aggregate function",
            };
            return Err(format!("a Python {kind} takes at least one parameter"));
        }
        let types = self
            .parameters
            .iter()
            .map(|p| p.data_type.clone())
            .collect();
        let code = PythonCode::new(&self.name, &self.code, shape, self.returns.clone());
        Ok((types, code))
    }
}

/// How the worker calls the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallShape {
    /// Once per batch, its arguments the batch's columns; it returns one value per row.
    Scalar,
    /// Once per row, each argument that row's list of a group's values; it returns one
    /// value per group.
    Aggregate,
}

impl CallShape {
    fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Aggregate => "aggregate",
        }
    }
}

/// A function defined by Python code, and the worker that runs it. Two are alike when
/// their code is (whether a worker runs is no part of it).
#[derive(Debug)]
pub struct PythonCode {
    name: String,
    code: String,
    shape: CallShape,
    returns: DataType,
    worker: Mutex<Option<Worker>>,
}

impl PythonCode {
    /// The function `name` of `code`, called as `shape` says, its results cast to
    /// `returns`. Its worker starts at the first call.
    pub fn new(name: &str, code: &str, shape: CallShape, returns: DataType) -> Self {
        Self {
            name: name.to_string(),
            code: code.to_string(),
            shape,
            returns,
            worker: Mutex::new(None),
        }
    }

    /// The type its results are cast to.
    pub fn returns(&self) -> &DataType {
        &self.returns
    }

    /// The function over `args` (`rows` rows), in its worker: started if none runs, and
    /// started again once if it died. The round trip blocks: on a runtime of several
    /// threads, the others take this thread's other tasks meanwhile (checkpoints, timers,
    /// sources).
    pub fn call(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        match threaded {
            true => tokio::task::block_in_place(|| self.call_blocking(args, rows)),
            false => self.call_blocking(args, rows),
        }
    }

    fn call_blocking(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let fields: Vec<Field> = args
            .iter()
            .enumerate()
            .map(|(i, a)| Field::new(format!("arg{i}"), a.data_type().clone(), true))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            args.to_vec(),
            &options,
        )?;
        let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = None;
        for _ in 0..2 {
            if worker.is_none() {
                let started = Worker::start(&self.name, self.shape, &self.code);
                *worker = Some(started.map_err(|e| self.error(e))?);
            }
            let running = worker.as_mut().expect("started above");
            match running.call(&batch) {
                // A value that does not fit the type fails the call (not NULL).
                Ok(Answer::Result(result)) => {
                    let options = CastOptions {
                        safe: false,
                        ..CastOptions::default()
                    };
                    return cast_with_options(&result, &self.returns, &options).map_err(|e| {
                        self.error(format!(
                            "its result, of type {}, cannot be cast to {}: {e}",
                            result.data_type(),
                            self.returns
                        ))
                    });
                }
                Ok(Answer::Raised(traceback)) => return Err(self.error(traceback)),
                // The worker is gone: once more with a new one.
                Err(e) => {
                    *worker = None;
                    last = Some(e);
                }
            }
        }
        Err(self.error(format!(
            "its worker stopped: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    fn error(&self, message: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!("Python function '{}': {message}", self.name))
    }
}

impl PartialEq for PythonCode {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for PythonCode {}

impl Hash for PythonCode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl PythonCode {
    fn identity(&self) -> (&str, &str, CallShape, &DataType) {
        (&self.name, &self.code, self.shape, &self.returns)
    }
}

/// What the worker answered.
enum Answer {
    Result(ArrayRef),
    /// The function raised: its traceback.
    Raised(String),
}

/// A running worker process.
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts a worker and loads `code` into it.
    fn start(name: &str, shape: CallShape, code: &str) -> std::result::Result<Self, String> {
        let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .args(["-c", WORKER, name, shape.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {python} (set {PYTHON_ENV}): {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut worker = Self {
            child,
            stdin,
            stdout,
        };
        worker.send(code.as_bytes()).map_err(|e| e.to_string())?;
        match worker.receive().map_err(|e| e.to_string())? {
            (0, _) => Ok(worker),
            (_, text) => Err(format!(
                "its code does not load in {python}: {}",
                String::from_utf8_lossy(&text).trim_end()
            )),
        }
    }

    fn call(&mut self, batch: &RecordBatch) -> std::io::Result<Answer> {
        let mut bytes = Vec::new();
        let mut writer =
            StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(std::io::Error::other)?;
        writer.write(batch).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)?;
        drop(writer);
        self.send(&bytes)?;
        let (status, payload) = self.receive()?;
        if status != 0 {
            return Ok(Answer::Raised(
                String::from_utf8_lossy(&payload).trim_end().to_string(),
            ));
        }
        let mut reader =
            StreamReader::try_new(payload.as_slice(), None).map_err(std::io::Error::other)?;
        let schema = reader.schema();
        let result = match reader.next().transpose().map_err(std::io::Error::other)? {
            Some(result) => result.column(0).clone(),
            // No rows: pyarrow writes no batch.
            None => arrow::array::new_empty_array(schema.field(0).data_type()),
        };
        Ok(Answer::Result(result))
    }

    fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let length = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
        self.stdin.write_all(&length.to_le_bytes())?;
        self.stdin.write_all(payload)?;
        self.stdin.flush()
    }

    fn receive(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.stdout.read_exact(&mut head)?;
        let length = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut payload = vec![0u8; length];
        self.stdout.read_exact(&mut payload)?;
        Ok((head[0], payload))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
