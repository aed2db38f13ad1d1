//! Multi-row writes whose rows travel as one JSON array parameter per statement (see
//! [`Engine::json_table`]), gathered so that SQLite runs a whole batch of them as one query.

use serde::Serialize;
use sqlx::AnyConnection;

use super::{Engine, Result};

/// Rows in one statement's parameter at most: bounds the size of one JSON text.
const ROWS_PER_STATEMENT: usize = 2_000;

/// Statements that each insert (or delete) the rows of one JSON array parameter, run in order.
///
/// On SQLite every statement is a hand-off to the connection's worker thread and back, two
/// context switches that cost more than the statement itself, so the statements go as one
/// multi-statement query. Each is kept there even with no rows: the query's text, and with it
/// the prepared statements sqlx caches by that text, then stays the same from batch to batch.
/// PostgreSQL runs them one by one (its protocol prepares one statement at a time) and leaves
/// out those with no rows.
pub(super) struct JsonStatements {
    engine: Engine,
    statements: Vec<String>,
    params: Vec<String>,
}

impl JsonStatements {
    pub(super) fn new(engine: Engine) -> Self {
        Self { engine, statements: Vec::new(), params: Vec::new() }
    }

    pub(super) fn engine(&self) -> Engine {
        self.engine
    }

    /// Adds a statement for `rows` (each serialised as a JSON array of column values); `sql`
    /// gives its text for the parameter number it reads the rows from.
    pub(super) fn push<T: Serialize>(&mut self, rows: &[T], sql: impl Fn(usize) -> String) {
        if rows.is_empty() {
            if self.engine == Engine::Sqlite {
                self.add(&sql, "[]".to_owned());
            }
            return;
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            // Serialising plain tuples and strings cannot fail.
            let json = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".to_owned());
            self.add(&sql, json);
        }
    }

    fn add(&mut self, sql: &impl Fn(usize) -> String, param: String) {
        let number = match self.engine {
            Engine::Sqlite => self.params.len() + 1,
            Engine::Postgres => 1,
        };
        self.statements.push(sql(number));
        self.params.push(param);
    }

    /// Runs the statements gathered so far, in order, and leaves none.
    pub(super) async fn execute(&mut self, conn: &mut AnyConnection) -> Result<()> {
        let statements = std::mem::take(&mut self.statements);
        let params = std::mem::take(&mut self.params);
        if statements.is_empty() {
            return Ok(());
        }
        match self.engine {
            Engine::Sqlite => {
                let sql = statements.join(";\n");
                let query = params.iter().fold(sqlx::query(&sql), |query, param| query.bind(param.as_str()));
                query.execute(&mut *conn).await?;
            }
            Engine::Postgres => {
                for (sql, param) in statements.iter().zip(&params) {
                    sqlx::query(sql).bind(param.as_str()).execute(&mut *conn).await?;
                }
            }
        }
        Ok(())
    }
}

/// Bytes as lowercase hex, for a BLOB column of a JSON row ([`super::JsonColumn::Hex`]).
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::{JsonColumn, test_support};
    use super::*;

    #[tokio::test]
    async fn statements_run_in_order_and_blobs_round_trip() {
        for storage in test_support::engines().await {
            let engine = storage.engine;
            let mut conn = storage.write.acquire().await.unwrap();
            let blob = if engine == Engine::Sqlite { "BLOB" } else { "BYTEA" };
            sqlx::query(&format!("CREATE TEMPORARY TABLE scratch (id BIGINT PRIMARY KEY, name TEXT, data {blob})"))
                .execute(&mut *conn)
                .await
                .unwrap();
            let insert = |param: usize| {
                format!(
                    "INSERT INTO scratch (id, name, data) {}",
                    engine.json_table(param, &[JsonColumn::Int, JsonColumn::Text, JsonColumn::Hex])
                )
            };
            let mut statements = JsonStatements::new(engine);
            let rows = vec![(1, "one", hex(&[0, 159, 255])), (2, "two \"quoted\"", hex(b"{}"))];
            statements.push(&rows, insert);
            statements.push::<(i64, &str, String)>(&[], insert);
            // Runs after the insert: the delete sees its rows.
            statements.push(&[(2,)], |param| {
                format!("DELETE FROM scratch WHERE id IN ({})", engine.json_table(param, &[JsonColumn::Int]))
            });
            statements.execute(&mut conn).await.unwrap();
            // Nothing is left to run twice.
            statements.execute(&mut conn).await.unwrap();

            let stored: Vec<(i64, String, Vec<u8>)> =
                sqlx::query_as("SELECT id, name, data FROM scratch ORDER BY id").fetch_all(&mut *conn).await.unwrap();
            assert_eq!(stored, vec![(1, "one".to_owned(), vec![0, 159, 255])]);
        }
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff, 0x7b]), "000aff7b");
        assert_eq!(hex(&[]), "");
    }
}
