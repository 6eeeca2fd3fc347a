//! mdsync state store (being written).
