//! The query engine: Triplit's query language, parsed (`ast`), prepared against the schema,
//! planned onto indexes, and executed with one filter evaluator shared with permissions and
//! live queries.

mod ast;
mod cost;
mod error;
mod exec;
mod filter;
mod like;
mod plan;
mod prepare;

pub use ast::{Direction, Filter, Include, Query};
pub use cost::QueryLimits;
pub use error::QueryErrorKind;
pub use exec::Explain;
pub use prepare::Variables;

pub(crate) use cost::json_size;
pub(crate) use exec::{Executor, OrderValues, compare_rows, exists_in};
pub(crate) use filter::lookup as lookup_path;
pub(crate) use prepare::{Condition, Op, Operand, Prepared, Rules, prepare};
