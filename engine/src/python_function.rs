//! A function written in Python (`CREATE FUNCTION ... LANGUAGE python AS 'def name(...)'`),
//! vectorized: it is called once per batch with its arguments as pyarrow arrays, and returns
//! an array of as many values. It runs in a worker process (`python_worker.rs`).

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::python_worker::{CallShape, PythonCode, PythonDefinition};

/// A scalar function whose body is Python code defining a function of its name.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PythonFunction {
    name: String,
    definition: String,
    signature: Signature,
    code: PythonCode,
}

impl PythonFunction {
    /// The function `definition` declares. Its worker starts now and runs it once on no
    /// rows: a function that cannot load, or whose result cannot be cast to its type, is
    /// refused here.
    pub fn try_new(definition: PythonDefinition) -> std::result::Result<Self, String> {
        let (types, code) = definition.load(CallShape::Scalar)?;
        let empty: Vec<ArrayRef> = types.iter().map(arrow::array::new_empty_array).collect();
        let function = Self {
            name: definition.name,
            code,
            definition: definition.statement,
            signature: Signature::exact(types, Volatility::Immutable),
        };
        function.code.call(&empty, 0).map_err(|e| e.to_string())?;
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
}

impl ScalarUDFImpl for PythonFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.code.returns().clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let result = self.code.call(&arrays, args.number_rows)?;
        Ok(ColumnarValue::Array(result))
    }
}
