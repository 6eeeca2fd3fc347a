//! A local server that behaves on the wire like the Adobe Marketo Engage REST API.
