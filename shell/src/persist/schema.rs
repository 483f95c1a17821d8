//! The ScyllaDB schema, as code: the statements of `infra/scylla/schema.cql` (embedded at compile
//! time, so the file and the server can never drift), split into statements, with the keyspace
//! name and replication factor substituted from the config; and [`migrate`], which runs them.
//!
//! The file is written for keyspace `zone` with `'replication_factor': 3` so that it also works
//! as is in cqlsh; this module replaces every whole-word `zone` identifier and that one number.
//! It never builds CQL from anything but the file and a validated keyspace name.

use scylla::client::session::Session;
use scylla::errors::{ExecutionError, SchemaAgreementError};

/// The schema file, verbatim.
pub const SCHEMA_CQL: &str = include_str!("../../../infra/scylla/schema.cql");

/// The keyspace name the schema file is written for.
pub const TEMPLATE_KEYSPACE: &str = "zone";

/// The replication factor option whose value is substituted.
const REPLICATION_FACTOR_KEY: &str = "'replication_factor':";

/// Why the schema could not be built or applied.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The keyspace name is not a plain CQL identifier.
    #[error(
        "keyspace name {0:?} must be 1-48 characters of letters, digits and _, starting with a letter"
    )]
    BadKeyspace(String),
    /// A replication factor of zero stores nothing.
    #[error("replication factor must be at least 1, got {0}")]
    BadReplicationFactor(u32),
    /// The schema file does not have the shape this module expects.
    #[error("schema file: {0}")]
    Template(String),
    /// A statement failed.
    #[error("schema statement failed: {statement}: {source}")]
    Execute {
        /// The first line of the failed statement.
        statement: String,
        /// The driver's error.
        source: Box<ExecutionError>,
    },
    /// The nodes did not agree on the schema in time.
    #[error("schema agreement: {0}")]
    Agreement(Box<SchemaAgreementError>),
}

/// Splits CQL text into statements: `--` comments (outside quoted strings) are removed, the
/// text is split on `;` (outside quoted strings), and each statement is trimmed; empty ones are
/// dropped.
pub fn split_statements(cql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut in_quote = false;
    let mut chars = cql.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quote {
            current.push(c);
            if c == '\'' {
                // '' inside a string is an escaped quote: the next quote re-opens the string,
                // which the toggle below handles naturally.
                in_quote = false;
            }
            continue;
        }
        match c {
            '\'' => {
                in_quote = true;
                current.push(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            ';' => {
                push_statement(&mut statements, &current);
                current.clear();
            }
            _ => current.push(c),
        }
    }
    push_statement(&mut statements, &current);
    statements
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        statements.push(trimmed.to_string());
    }
}

/// Whether `name` is a keyspace name this module will put into CQL: the rule the config
/// validation applies (and a subset of what ScyllaDB accepts unquoted).
pub fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every whole-word identifier `from` outside quoted strings with `to`.
fn replace_identifier(text: &str, from: &str, to: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut replaced = 0;
    let mut in_quote = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, replaced: &mut usize| {
        if word == from {
            out.push_str(to);
            *replaced += 1;
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if !in_quote && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out, &mut replaced);
        if c == '\'' {
            in_quote = !in_quote;
        }
        out.push(c);
    }
    flush(&mut word, &mut out, &mut replaced);
    (out, replaced)
}

/// Replaces the number after `'replication_factor':` with `factor`.
fn replace_replication_factor(statement: &str, factor: u32) -> Result<String, SchemaError> {
    let Some(at) = statement.find(REPLICATION_FACTOR_KEY) else {
        return Err(SchemaError::Template(format!(
            "keyspace statement has no {REPLICATION_FACTOR_KEY} option"
        )));
    };
    let value_start = at + REPLICATION_FACTOR_KEY.len();
    let rest = &statement[value_start..];
    let digits_at = rest.len() - rest.trim_start().len();
    let digits = rest[digits_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    if digits == 0 {
        return Err(SchemaError::Template(format!(
            "{REPLICATION_FACTOR_KEY} is not followed by a number"
        )));
    }
    let number_start = value_start + digits_at;
    Ok(format!(
        "{}{}{}",
        &statement[..number_start],
        factor,
        &statement[number_start + digits..]
    ))
}

/// The schema's statements for `keyspace` with `replication_factor` replicas per datacenter:
/// the keyspace first, then the tables.
///
/// ```
/// use zone_shell::persist::schema::statements;
/// let stmts = statements("game", 1).unwrap();
/// assert!(stmts[0].starts_with("CREATE KEYSPACE IF NOT EXISTS game"));
/// ```
pub fn statements(keyspace: &str, replication_factor: u32) -> Result<Vec<String>, SchemaError> {
    if !valid_keyspace(keyspace) {
        return Err(SchemaError::BadKeyspace(keyspace.to_string()));
    }
    if replication_factor == 0 {
        return Err(SchemaError::BadReplicationFactor(replication_factor));
    }
    let mut out = Vec::new();
    for (i, statement) in split_statements(SCHEMA_CQL).into_iter().enumerate() {
        let (statement, replaced) = replace_identifier(&statement, TEMPLATE_KEYSPACE, keyspace);
        if replaced == 0 {
            return Err(SchemaError::Template(format!(
                "statement {i} does not name keyspace {TEMPLATE_KEYSPACE}"
            )));
        }
        let is_keyspace = statement.starts_with("CREATE KEYSPACE");
        if is_keyspace != (i == 0) {
            return Err(SchemaError::Template(
                "the keyspace must be created first, and only once".into(),
            ));
        }
        if is_keyspace {
            out.push(replace_replication_factor(&statement, replication_factor)?);
        } else {
            out.push(statement);
        }
    }
    Ok(out)
}

/// Creates the keyspace and tables if they do not exist (every statement is `IF NOT EXISTS`, so
/// running it again changes nothing), then waits until every node agrees on the schema.
pub async fn migrate(
    session: &Session,
    keyspace: &str,
    replication_factor: u32,
) -> Result<(), SchemaError> {
    for statement in statements(keyspace, replication_factor)? {
        session
            .query_unpaged(statement.as_str(), ())
            .await
            .map_err(|source| SchemaError::Execute {
                statement: statement.lines().next().unwrap_or_default().to_string(),
                source: Box::new(source),
            })?;
        tracing::info!(
            statement = statement.lines().next().unwrap_or_default(),
            "schema statement applied"
        );
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| SchemaError::Agreement(Box::new(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_splits_into_the_keyspace_and_six_tables() {
        let stmts = split_statements(SCHEMA_CQL);
        let heads: Vec<&str> = stmts
            .iter()
            .map(|s| s.lines().next().unwrap_or_default())
            .collect();
        assert_eq!(
            heads,
            [
                "CREATE KEYSPACE IF NOT EXISTS zone",
                "CREATE TABLE IF NOT EXISTS zone.combat_events (",
                "CREATE TABLE IF NOT EXISTS zone.player_state (",
                "CREATE TABLE IF NOT EXISTS zone.player_plugins (",
                "CREATE TABLE IF NOT EXISTS zone.player_stats (",
                "CREATE TABLE IF NOT EXISTS zone.player_profiles (",
                "CREATE TABLE IF NOT EXISTS zone.zone_fences (",
            ]
        );
        for s in &stmts {
            assert!(!s.contains("--"), "a comment survived: {s}");
            assert!(!s.contains(';'), "a separator survived: {s}");
        }
    }

    #[test]
    fn comments_and_separators_inside_strings_are_kept() {
        let stmts = split_statements("-- head\nA 'x;--y' B; -- tail\n C;\n;  ");
        assert_eq!(stmts, ["A 'x;--y' B", "C"]);
    }

    #[test]
    fn keyspace_and_replication_factor_are_substituted() {
        let stmts = statements("mmo_eu1", 5).expect("statements");
        assert_eq!(stmts.len(), 7);
        assert!(stmts[0].starts_with("CREATE KEYSPACE IF NOT EXISTS mmo_eu1\n"));
        assert!(
            stmts[0].contains("'replication_factor': 5}"),
            "{}",
            stmts[0]
        );
        assert!(stmts[0].contains("'NetworkTopologyStrategy'"));
        assert!(stmts[1].starts_with("CREATE TABLE IF NOT EXISTS mmo_eu1.combat_events ("));
        assert!(stmts[5].starts_with("CREATE TABLE IF NOT EXISTS mmo_eu1.player_profiles ("));
        assert!(stmts[6].starts_with("CREATE TABLE IF NOT EXISTS mmo_eu1.zone_fences ("));
        for s in &stmts {
            let (_, left) = replace_identifier(s, TEMPLATE_KEYSPACE, "x");
            assert_eq!(left, 0, "the template keyspace survived in {s}");
        }
        // Column names that merely start with the template name are untouched.
        assert!(stmts[1].contains("zone_id bigint"));
        assert!(stmts[1].contains("PRIMARY KEY ((zone_id, day), run, event_id)"));
        assert!(stmts[1].contains("'TimeWindowCompactionStrategy'"));
    }

    #[test]
    fn the_default_config_reproduces_the_file() {
        let stmts = statements(TEMPLATE_KEYSPACE, 3).expect("statements");
        assert_eq!(stmts, split_statements(SCHEMA_CQL));
    }

    #[test]
    fn bad_names_and_factors_are_refused() {
        for bad in ["", "1abc", "a-b", "a b", "a;DROP", "x'y", &"k".repeat(49)] {
            assert!(
                matches!(statements(bad, 3), Err(SchemaError::BadKeyspace(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            statements("zone", 0),
            Err(SchemaError::BadReplicationFactor(0))
        ));
    }
}
