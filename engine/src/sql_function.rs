//! A function written in SQL (`CREATE FUNCTION name(args) RETURNS type AS 'expression'`): a
//! DataFusion scalar UDF whose calls the optimizer replaces by its body, the arguments put
//! in for its parameters, so that it costs what the expression written out costs, inside
//! windows, joins and filters alike. Where a call is not replaced, it evaluates its body.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast,
};
use datafusion::physical_expr::create_physical_expr;

/// One parameter of a SQL function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Parameter {
    /// Its name in the body (`price`), or `$1`, `$2`, ... for a parameter without one.
    pub name: String,
    /// Its type: arguments are cast to it.
    pub data_type: DataType,
}

/// A scalar function whose body is a SQL expression over its parameters.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SqlFunction {
    name: String,
    parameters: Vec<Parameter>,
    returns: DataType,
    /// The body, its parameters as columns named after them.
    body: Expr,
    /// The statement that made it, for `SHOW FUNCTIONS`.
    definition: String,
    signature: Signature,
}

impl SqlFunction {
    /// The function `name` of `parameters`, returning `body` cast to `returns`.
    pub fn new(
        name: &str,
        parameters: Vec<Parameter>,
        returns: DataType,
        body: Expr,
        definition: &str,
    ) -> Self {
        let types = parameters.iter().map(|p| p.data_type.clone()).collect();
        // A body that calls `random()` is not folded into one value.
        let volatility = match body.is_volatile() {
            true => Volatility::Volatile,
            false => Volatility::Immutable,
        };
        Self {
            name: name.to_string(),
            returns,
            body,
            definition: definition.to_string(),
            signature: Signature::exact(types, volatility),
            parameters,
        }
    }

    /// `function` as a function written in SQL, if it is one.
    pub fn of(function: &ScalarUDF) -> Option<&Self> {
        function.inner().downcast_ref()
    }

    /// The statement that made it.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// The schema its body is written against: a column per parameter.
    pub fn parameter_schema(parameters: &[Parameter]) -> Result<DFSchema> {
        let fields: Vec<Field> = parameters
            .iter()
            .map(|p| Field::new(&p.name, p.data_type.clone(), true))
            .collect();
        DFSchema::try_from(Schema::new(fields))
    }

    /// The body with `args` in place of the parameters, cast to the return type.
    fn inlined(&self, args: &[Expr]) -> Result<Expr> {
        let body = self
            .body
            .clone()
            .transform(|e| {
                let Expr::Column(column) = &e else {
                    return Ok(Transformed::no(e));
                };
                match self.parameters.iter().position(|p| p.name == column.name) {
                    Some(i) => Ok(Transformed::yes(args[i].clone())),
                    None => Ok(Transformed::no(e)),
                }
            })?
            .data;
        Ok(cast(body, self.returns.clone()))
    }
}

impl ScalarUDFImpl for SqlFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(self.inlined(&args)?))
    }

    /// A call the optimizer left: the body evaluated over the arguments as columns.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let schema = Self::parameter_schema(&self.parameters)?;
        let body = cast(self.body.clone(), self.returns.clone());
        let planning = PhysicalPlanningContext::default();
        let expr = create_physical_expr(&body, &schema, &ExecutionProps::new(), &planning)?;
        let columns = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = RecordBatchOptions::new().with_row_count(Some(args.number_rows));
        let schema = Arc::new(schema.as_arrow().clone());
        let batch = RecordBatch::try_new_with_options(schema, columns, &rows)?;
        expr.evaluate(&batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::Int64Type;
    use datafusion::config::ConfigOptions;
    use datafusion::logical_expr::{col, lit};

    fn plus_one() -> SqlFunction {
        let parameter = Parameter {
            name: "x".into(),
            data_type: DataType::Int64,
        };
        let body = col("x") + lit(1_i64);
        SqlFunction::new("plus_one", vec![parameter], DataType::Int64, body, "")
    }

    #[test]
    fn a_call_becomes_its_body_with_the_argument_in_place() {
        let inlined = plus_one().inlined(&[col("qty") * lit(2_i64)]).unwrap();
        assert_eq!(
            inlined.to_string(),
            "CAST(qty * Int64(2) + Int64(1) AS Int64)"
        );
    }

    #[test]
    fn a_call_left_in_a_plan_evaluates_its_body() {
        let values: Arc<dyn Array> = Arc::new(Int64Array::from(vec![1, 41]));
        let field = Arc::new(Field::new("x", DataType::Int64, true));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(values)],
            arg_fields: vec![field.clone()],
            number_rows: 2,
            return_field: field,
            config_options: Arc::new(ConfigOptions::default()),
        };
        let result = plus_one().invoke_with_args(args).unwrap();
        let result = result.into_array(2).unwrap();
        assert_eq!(result.as_primitive::<Int64Type>().values(), &[2, 42]);
    }
}
