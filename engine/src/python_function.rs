//! A function written in Python (`CREATE FUNCTION ... LANGUAGE python AS 'def name(...)'`),
//! vectorized: it is called once per batch with its arguments as pyarrow arrays, and returns
//! an array of as many values.
//!
//! The code runs in a Python process of its own (`python_function/worker.py`, started with
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
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::sql_function::Parameter;

/// The worker's code.
const WORKER: &str = include_str!("python_function/worker.py");
/// Where the Python with pyarrow is.
const PYTHON_ENV: &str = "FERRIS_PYTHON";

/// A scalar function whose body is Python code defining a function of its name.
#[derive(Debug)]
pub struct PythonFunction {
    name: String,
    parameters: Vec<Parameter>,
    returns: DataType,
    code: String,
    definition: String,
    signature: Signature,
    worker: Mutex<Option<Worker>>,
}

impl PartialEq for PythonFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.definition == other.definition
    }
}

impl Eq for PythonFunction {}

impl Hash for PythonFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.definition.hash(state);
    }
}

impl PythonFunction {
    /// The function `name` of `parameters` returning `returns`, defined by `code`. Its
    /// worker starts now and runs it once on no rows: a function that cannot load, or whose
    /// result cannot be cast to `returns`, is refused here.
    pub fn try_new(
        name: &str,
        parameters: Vec<Parameter>,
        returns: DataType,
        code: &str,
        definition: &str,
    ) -> std::result::Result<Self, String> {
        if parameters.is_empty() {
            return Err("a Python function takes at least one parameter".into());
        }
        let types = parameters.iter().map(|p| p.data_type.clone()).collect();
        let function = Self {
            name: name.to_string(),
            returns,
            code: code.to_string(),
            definition: definition.to_string(),
            signature: Signature::exact(types, Volatility::Immutable),
            parameters,
            worker: Mutex::new(None),
        };
        let empty: Vec<ArrayRef> = function
            .parameters
            .iter()
            .map(|p| arrow::array::new_empty_array(&p.data_type))
            .collect();
        function.call(&empty, 0).map_err(|e| e.to_string())?;
        Ok(function)
    }

    /// `function` as a function written in Python, if it is one.
    pub fn of(function: &ScalarUDF) -> Option<&Self> {
        function.inner().downcast_ref()
    }

    /// The statement that made it.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// The function over `args` (`rows` rows), in its worker: started if none runs, and
    /// started again once if it died.
    fn call(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let fields: Vec<Field> = self
            .parameters
            .iter()
            .enumerate()
            .map(|(i, p)| Field::new(format!("arg{i}"), p.data_type.clone(), true))
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
                *worker = Some(Worker::start(&self.name, &self.code).map_err(|e| self.error(e))?);
            }
            let running = worker.as_mut().expect("started above");
            match running.call(&batch) {
                Ok(Answer::Result(result)) => {
                    return cast(&result, &self.returns).map_err(|e| {
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

impl ScalarUDFImpl for PythonFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let call = || self.call(&arrays, args.number_rows);
        // The round trip to the worker blocks: on a runtime of several threads, the others
        // take this thread's other tasks meanwhile (checkpoints, timers, sources).
        let threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        let result = match threaded {
            true => tokio::task::block_in_place(call)?,
            false => call()?,
        };
        Ok(ColumnarValue::Array(result))
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
    fn start(name: &str, code: &str) -> std::result::Result<Self, String> {
        let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .args(["-c", WORKER, name])
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
