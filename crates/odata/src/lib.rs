//! OData v4 syntax used by the Dataverse Web API: `$filter`, `$orderby`, `$select`, keys, `Prefer`, `$batch` framing.
//!
//! **Architecture invariant:** pure code. No I/O, no async, no clock reads (callers pass "now" in
//! [`filter::EvalContext`]), and no panics on any input: every failure is an [`ODataError`] carrying the
//! HTTP status, HRESULT and message the real service uses.

pub mod error;
pub mod literal;

pub use error::ODataError;
pub use literal::Literal;
mod compare;
pub mod filter;

pub use filter::{Aliases, EvalContext, Expr, parse_filter};
pub mod orderby;
pub mod select;

pub use orderby::{OrderBy, compare_rows, parse_orderby};
pub use select::parse_select;
pub mod prefer;

pub use prefer::{Preference, Preferences};
pub mod key;

pub use key::{EntityKey, KeyValue, ResourcePath, Segment, parse_resource_path};
pub mod batch;

pub use batch::{
    BatchPart, BatchRequest, BatchResponse, BatchResponseWriter, ContentIds, parse_batch,
};
