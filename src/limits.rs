//! Hard limits that the settings check and the stores obey: the largest
//! script call Redis takes and the largest upsert MySQL takes.
//!
//! This module owns those numbers only. It must never depend on another
//! module of the crate, so both the settings and the stores can use it.

/// Most tokens or fields one script call takes (Lua's `unpack` has a limit
/// of about 8 000 values).
pub(crate) const MAX_SCRIPT_BATCH: usize = 1000;

/// Rows per upsert statement at most: 12 placeholders a row stays far below
/// the server's 65 535 placeholder limit.
pub(crate) const MAX_DB_BATCH: usize = 5000;
