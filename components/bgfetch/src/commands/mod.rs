//! The commands: `fetch`, `run`, `js` and the queries. Each opens the store, starts the engine and
//! reports through [`crate::output`]; the command line itself is in [`crate::cli`].

pub mod fetch;
pub mod js;
pub mod query;
pub mod run;
mod running;
