//! Multi-row writes whose rows travel as one JSON array parameter per statement (see
//! [`Engine::json_table`]), gathered so that a whole batch of them is one round trip.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool};

use super::{Engine, Result};

/// Rows in one statement's parameter at most: bounds the size of one JSON text.
const ROWS_PER_STATEMENT: usize = 2_000;

/// Statements that each insert (or delete) the rows of one JSON array parameter, run together.
///
/// The statements must touch disjoint rows and none may read what another writes: on
/// PostgreSQL they run as one statement (each but the last a data-modifying `WITH` clause), so
/// all of them see the database as it was before it. That one statement is one round trip,
/// where one per table left the event writer waiting on the network for most of a batch, and
/// one prepared statement for the batch's shape (statements with no rows are left out).
///
/// On SQLite every statement is a hand-off to the connection's worker thread and back, two
/// context switches that cost more than the statement itself, so they go as one multi-statement
/// query, in order. Each is kept there even with no rows: the query's text, and with it the
/// prepared statements sqlx caches by that text, then stays the same from batch to batch.
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
        self.statements.push(sql(self.params.len() + 1));
        self.params.push(param);
    }

    /// Runs the statements gathered so far and leaves none.
    pub(super) async fn execute(&mut self, conn: &mut AnyConnection) -> Result<()> {
        let statements = std::mem::take(&mut self.statements);
        let params = std::mem::take(&mut self.params);
        let Some(sql) = self.combined(&statements) else {
            return Ok(());
        };
        let query = params.iter().fold(sqlx::query(&sql), |query, param| query.bind(param.as_str()));
        query.execute(&mut *conn).await?;
        Ok(())
    }

    /// Runs the statements gathered so far as one transaction, on a connection of `pool`: on
    /// PostgreSQL the one statement they are is a transaction of its own, so this is one round
    /// trip rather than three.
    pub(super) async fn execute_atomically(&mut self, pool: &AnyPool) -> Result<()> {
        match self.engine {
            Engine::Postgres => self.execute(&mut *pool.acquire().await?).await,
            Engine::Sqlite => {
                let mut tx = pool.begin().await?;
                self.execute(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// The one query that runs `statements` (`None` for none).
    fn combined(&self, statements: &[String]) -> Option<String> {
        let (last, before) = statements.split_last()?;
        Some(match self.engine {
            Engine::Sqlite => statements.join(";\n"),
            Engine::Postgres if before.is_empty() => last.clone(),
            Engine::Postgres => {
                let clauses: Vec<String> =
                    before.iter().enumerate().map(|(i, statement)| format!("w{i} AS ({statement})")).collect();
                format!("WITH {} {last}", clauses.join(", "))
            }
        })
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

    /// A table of the test's database (not a temporary one: a pool's connections all see it).
    async fn scratch_table(storage: &super::super::Storage) {
        let blob = if storage.engine == Engine::Sqlite { "BLOB" } else { "BYTEA" };
        sqlx::query(&format!("CREATE TABLE scratch (id BIGINT PRIMARY KEY, name TEXT, data {blob})"))
            .execute(&storage.write)
            .await
            .unwrap();
    }

    fn insert(engine: Engine) -> impl Fn(usize) -> String {
        move |param| {
            format!(
                "INSERT INTO scratch (id, name, data) {}",
                engine.json_table(param, &[JsonColumn::Int, JsonColumn::Text, JsonColumn::Hex])
            )
        }
    }

    async fn stored(storage: &super::super::Storage) -> Vec<(i64, String, Vec<u8>)> {
        sqlx::query_as("SELECT id, name, data FROM scratch ORDER BY id").fetch_all(&storage.write).await.unwrap()
    }

    #[tokio::test]
    async fn every_statement_runs_and_blobs_round_trip() {
        for storage in test_support::engines().await {
            let engine = storage.engine;
            scratch_table(&storage).await;
            sqlx::query("INSERT INTO scratch (id, name) VALUES (9, 'old')").execute(&storage.write).await.unwrap();
            let mut statements = JsonStatements::new(engine);
            let rows = vec![(1, "one", hex(&[0, 159, 255])), (2, "two \"quoted\" $1 ')", hex(b"{}"))];
            statements.push(&rows, insert(engine));
            statements.push::<(i64, &str, String)>(&[], insert(engine));
            statements.push(&[(9,)], |param| {
                format!("DELETE FROM scratch WHERE id IN ({})", engine.json_table(param, &[JsonColumn::Int]))
            });
            // More rows than one statement takes.
            let many: Vec<(i64, String, String)> =
                (100..100 + ROWS_PER_STATEMENT as i64 + 5).map(|id| (id, format!("n{id}"), hex(&[1]))).collect();
            statements.push(&many, insert(engine));
            let mut conn = storage.write.acquire().await.unwrap();
            statements.execute(&mut conn).await.unwrap();
            // Nothing is left to run twice.
            statements.execute(&mut conn).await.unwrap();
            drop(conn);

            let stored = stored(&storage).await;
            assert_eq!(stored.len(), 2 + many.len());
            assert_eq!(stored[0], (1, "one".to_owned(), vec![0, 159, 255]));
            assert_eq!(stored[1], (2, "two \"quoted\" $1 ')".to_owned(), b"{}".to_vec()));
            assert_eq!(stored.last().map(|row| row.0), many.last().map(|row| row.0));
        }
    }

    #[tokio::test]
    async fn a_failing_statement_leaves_nothing_of_the_others() {
        for storage in test_support::engines().await {
            let engine = storage.engine;
            scratch_table(&storage).await;
            let mut statements = JsonStatements::new(engine);
            statements.push(&[(1, "one", hex(b"a"))], insert(engine));
            // The same key twice in one insert: a constraint violation.
            statements.push(&[(2, "two", hex(b"b")), (2, "again", hex(b"c"))], insert(engine));
            assert!(statements.execute_atomically(&storage.write).await.is_err());
            assert!(stored(&storage).await.is_empty());

            // The connection is usable afterwards, and a good batch commits.
            statements.push(&[(3, "three", hex(b"d"))], insert(engine));
            statements.execute_atomically(&storage.write).await.unwrap();
            assert_eq!(stored(&storage).await, vec![(3, "three".to_owned(), b"d".to_vec())]);
        }
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff, 0x7b]), "000aff7b");
        assert_eq!(hex(&[]), "");
    }
}
