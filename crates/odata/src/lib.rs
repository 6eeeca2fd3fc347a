//! OData v4 syntax used by the Dataverse Web API: `$filter`, `$orderby`, `$select`, keys, `Prefer`, `$batch` framing.
