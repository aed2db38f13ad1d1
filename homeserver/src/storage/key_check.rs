//! The key-check record: a known value sealed with the database's at-rest key. Checked at start,
//! so a wrong or missing key refuses to start rather than failing on the first read.

use sqlx::Row as _;

use super::{Result, Storage, StorageError};

const RECORD_ID: &str = "myelin at-rest key check";

fn expected() -> serde_json::Value {
    serde_json::json!({ "check": RECORD_ID })
}

impl Storage {
    /// Checks the configured key against the database (storing the check record on first use
    /// of encryption), and drops the plaintext search index when encrypting.
    pub async fn check_key(&self) -> Result<()> {
        let stored =
            sqlx::query("SELECT record FROM at_rest_key_check WHERE id = 1").fetch_optional(&self.read).await?;
        let stored: Option<Vec<u8>> = stored.map(|row| row.try_get("record")).transpose()?;
        match (stored, self.codec.encrypts()) {
            (None, false) => return Ok(()),
            (None, true) => self.store_key_check().await?,
            (Some(_), false) => {
                return Err(StorageError::Key(
                    "this database is encrypted at rest: set storage.encryption = true and give its key \
                     (storage.encryption_key_file or MYELIN_STORAGE__ENCRYPTION_KEY)"
                        .into(),
                ));
            }
            (Some(bytes), true) => {
                if !self.codec.decode(RECORD_ID, &bytes).is_ok_and(|value| value == expected()) {
                    return Err(StorageError::Key(
                        "the configured encryption key does not match this database's (the key check fails); \
                         start with the key the database was encrypted with"
                            .into(),
                    ));
                }
            }
        }
        // Index rows from before encryption was turned on hold message text in the clear.
        sqlx::query("DELETE FROM event_search").execute(&self.write).await?;
        Ok(())
    }

    /// Seals the check record with the current key (first start with encryption, or a rotation).
    pub(super) async fn store_key_check(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO at_rest_key_check (id, record) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        )
        .bind(self.codec.encode(RECORD_ID, &expected()))
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
