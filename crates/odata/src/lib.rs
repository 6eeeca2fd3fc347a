//! OData v4 syntax used by the Dataverse Web API: `$filter`, `$orderby`, `$select`, keys, `Prefer`,
//! `$batch` framing, and the error envelope.
//!
//! **Architecture invariant:** pure code. No I/O, no async, no clock reads (callers pass "now" in
//! [`EvalContext`]), and no panics on any input: every failure is an [`ODataError`] carrying the HTTP
//! status, HRESULT and message the real service uses. Nesting in `$filter` is capped
//! ([`filter::MAX_NESTING`]) so hostile input cannot exhaust the stack.
//!
//! **API boundary:** this crate knows nothing about entity metadata. Callers validate column names from
//! [`Expr::columns`] / [`parse_select`] / [`parse_orderby`] and report unknown ones with
//! [`ODataError::property_not_found`].
//!
//! | concern | entry point |
//! |---|---|
//! | `$filter` | [`parse_filter`] → [`Expr`] (`columns`, `eval`) |
//! | `$orderby` | [`parse_orderby`], [`orderby::parse_orderby_with_aliases`], [`compare_rows`] |
//! | `$select` | [`parse_select`] |
//! | literals | [`Literal::parse`] |
//! | `Prefer` / `Preference-Applied` | [`Preferences::parse`], [`Preferences::applied`] |
//! | resource path / keys | [`parse_resource_path`] → [`ResourcePath`], [`key::split_request_target`] |
//! | `$batch` | [`parse_batch`], [`ContentIds`], [`BatchResponseWriter`] |
//! | errors | [`ODataError`] (`to_json`, `body`) |
//!
//! Wording sources: ODataLib (`Microsoft.OData.Core`) resource strings for syntax/binding errors,
//! Dataverse docs for query functions and `$batch`, dynamics-web-api for the batch framing it parses.

#![warn(missing_docs)]

mod compare;

pub mod batch;
pub mod error;
pub mod filter;
pub mod key;
pub mod literal;
pub mod orderby;
pub mod prefer;
pub mod select;

pub use batch::{
    BatchPart, BatchRequest, BatchResponse, BatchResponseWriter, ContentIds, parse_batch,
};
pub use error::ODataError;
pub use filter::{
    Aliases, CompareOp, Condition, ConditionOperator, EvalContext, Expr, Operand, TextFunction,
    parse_filter,
};
pub use key::{EntityKey, KeyValue, ResourcePath, Segment, parse_resource_path};
pub use literal::Literal;
pub use orderby::{
    OrderBy, compare_rows, compare_values, parse_orderby, parse_orderby_with_aliases,
};
pub use prefer::{Preference, Preferences};
pub use select::parse_select;
