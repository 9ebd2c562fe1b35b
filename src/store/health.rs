//! What a MySQL failure means, how it reads, and repairing a schema that
//! went missing under a running worker.
//!
//! This module owns the classification of MySQL errors — worth retrying as
//! is, fixed by re-running the migrations, or needing a person — and their
//! wording: the root cause once, with advice when a person must act. It
//! must never drop or rewrite data: repairs only create what is missing
//! (`CREATE TABLE IF NOT EXISTS`, adding columns and indexes).

use mysql_async::prelude::*;
use mysql_async::{Opts, Pool};

use super::{StoreError, MIGRATIONS};

/// What to do about a failed MySQL operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// Transient (server down or restarting, connection lost, lock wait,
    /// deadlock): retry the same operation.
    Retry,
    /// A table or column is missing (dropped, or a database behind the
    /// code): re-run the migrations, then retry.
    Migrate,
    /// Retrying cannot fix it; the text says what a person should do.
    Operator(String),
}

/// MySQL server error codes that decide a remedy.
mod code {
    pub(super) const DB_ACCESS_DENIED: u16 = 1044;
    pub(super) const ACCESS_DENIED: u16 = 1045;
    pub(super) const BAD_DB: u16 = 1049;
    pub(super) const BAD_FIELD: u16 = 1054;
    pub(super) const NO_SUCH_TABLE: u16 = 1146;
    pub(super) const TABLE_ACCESS_DENIED: u16 = 1142;
    pub(super) const COLUMN_ACCESS_DENIED: u16 = 1143;
    pub(super) const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    pub(super) const DATA_TOO_LONG: u16 = 1406;
    pub(super) const TRUNCATED_WRONG_VALUE: u16 = 1292;
    pub(super) const INCORRECT_STRING_VALUE: u16 = 1366;
    pub(super) const WRONG_VALUE_COUNT: u16 = 1136;
    pub(super) const PARSE_ERROR: u16 = 1064;
    pub(super) const TABLE_EXISTS: u16 = 1050;
    pub(super) const DUP_FIELDNAME: u16 = 1060;
    pub(super) const DUP_KEYNAME: u16 = 1061;
    pub(super) const CANT_DROP_FIELD_OR_KEY: u16 = 1091;
}

/// Decides what to do about `error`.
pub fn remedy(error: &StoreError) -> Remedy {
    let StoreError::Mysql(error) = error else {
        return match error {
            StoreError::Url { .. } => Remedy::Operator("fix mysql.url".to_string()),
            _ => Remedy::Retry,
        };
    };
    let mysql_async::Error::Server(server) = error else {
        return Remedy::Retry;
    };
    match server.code {
        code::NO_SUCH_TABLE | code::BAD_FIELD => Remedy::Migrate,
        code::ACCESS_DENIED => Remedy::Operator(
            "check the user and password in mysql.url, and that the user may connect from this host"
                .to_string(),
        ),
        code::DB_ACCESS_DENIED
        | code::TABLE_ACCESS_DENIED
        | code::COLUMN_ACCESS_DENIED
        | code::SPECIFIC_ACCESS_DENIED => Remedy::Operator(
            "grant the mysql.url user SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER and INDEX on the database"
                .to_string(),
        ),
        code::BAD_DB => Remedy::Operator(
            "create the database named in mysql.url (CREATE DATABASE ...)".to_string(),
        ),
        code::DATA_TOO_LONG
        | code::TRUNCATED_WRONG_VALUE
        | code::INCORRECT_STRING_VALUE
        | code::WRONG_VALUE_COUNT
        | code::PARSE_ERROR => Remedy::Operator(
            "the schema does not match this version of conveyor: run `conveyor migrate` with the same version, or compare the job_results table with docs/architecture.md"
                .to_string(),
        ),
        _ => Remedy::Retry,
    }
}

/// `error` as a person reads it: the server's code and message, or the root
/// cause of a connection failure, once (mysql_async nests the same I/O
/// error several times).
pub fn describe(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Server(server) => {
            format!(
                "MySQL error {} ({}): {}",
                server.code, server.state, server.message
            )
        }
        other => root_cause(other),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    deepest.to_string()
}

/// `host:port` of a MySQL URL, for messages about reaching it (no user,
/// password or database).
pub fn address(url: &str) -> String {
    match Opts::from_url(url) {
        Ok(opts) => format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
        Err(_) => "the address in mysql.url".to_string(),
    }
}

/// Re-creates what the migrations made and is now missing — a table that
/// was dropped, a column or index that is gone — without touching what is
/// there, under the same lock as [`super::migrate`]. Only the schema steps (`CREATE`, `ALTER`) are re-run, in
/// order: `CREATE TABLE IF NOT EXISTS` leaves a present table alone, and a
/// step whose effect is already in place fails harmlessly (duplicate column
/// or key, nothing to drop) and is skipped.
pub async fn repair(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await?;
    super::lock_migrations(&mut conn).await?;
    let result = reapply_schema_steps(&mut conn).await;
    super::unlock_migrations(&mut conn).await?;
    result
}

async fn reapply_schema_steps(conn: &mut mysql_async::Conn) -> Result<(), StoreError> {
    for statement in MIGRATIONS.iter().filter(|s| is_schema_step(s)) {
        match conn.query_drop(*statement).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(server)) if is_already_in_place(server.code) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn is_schema_step(statement: &str) -> bool {
    let head = statement.trim_start().to_ascii_uppercase();
    head.starts_with("CREATE ") || head.starts_with("ALTER ")
}

/// Errors of a schema step whose effect is already there.
fn is_already_in_place(server_code: u16) -> bool {
    matches!(
        server_code,
        code::TABLE_EXISTS | code::DUP_FIELDNAME | code::DUP_KEYNAME | code::CANT_DROP_FIELD_OR_KEY
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::ServerError;

    fn server(code: u16) -> StoreError {
        StoreError::Mysql(mysql_async::Error::Server(ServerError {
            code,
            message: "m".into(),
            state: "42S02".into(),
        }))
    }

    #[test]
    fn missing_tables_and_columns_are_fixed_by_migrating() {
        assert_eq!(remedy(&server(1146)), Remedy::Migrate);
        assert_eq!(remedy(&server(1054)), Remedy::Migrate);
    }

    #[test]
    fn access_and_schema_mismatches_need_a_person_and_say_what_to_do() {
        for (code, advice) in [
            (1045, "password"),
            (1142, "grant"),
            (1049, "CREATE DATABASE"),
            (1406, "conveyor migrate"),
        ] {
            match remedy(&server(code)) {
                Remedy::Operator(text) => assert!(text.contains(advice), "{code}: {text}"),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn outages_locks_and_deadlocks_are_retried() {
        for code in [1205, 1213, 2006, 2013, 1040, 1290] {
            assert_eq!(remedy(&server(code)), Remedy::Retry, "{code}");
        }
        let io = StoreError::Mysql(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )));
        assert_eq!(remedy(&io), Remedy::Retry);
    }

    #[test]
    fn a_refused_connection_reads_once() {
        let refused = std::io::Error::from_raw_os_error(111);
        let error = mysql_async::Error::Io(mysql_async::IoError::Io(refused));
        let text = describe(&error);
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert!(!text.contains("Input/output error"), "{text}");
    }

    #[test]
    fn only_schema_steps_are_re_run() {
        assert!(is_schema_step("  CREATE TABLE IF NOT EXISTS x (a INT)"));
        assert!(is_schema_step("alter table x add column b int"));
        assert!(!is_schema_step("UPDATE job_results SET status = 'dead'"));
        assert!(MIGRATIONS.iter().all(|s| is_schema_step(s)));
    }

    #[test]
    fn address_names_host_and_port_only() {
        assert_eq!(
            address("mysql://u:secret@db.example:3307/jobs"),
            "db.example:3307"
        );
        assert_eq!(address("mysql://127.0.0.1/jobs"), "127.0.0.1:3306");
    }
}
