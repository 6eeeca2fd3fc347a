//! A local server that behaves on the wire like the Dataverse (Dynamics 365) Web API v9.2.
