//! Who has the chat open on each instance: one row per instance in `presence`, its list as a
//! JSON array of `[session id, name, crowded]` (a list of pairs, from an older instance, reads
//! as nobody crowded), rewritten at every change (announced to the others) and at
//! every heartbeat (not announced: the others read at their own heartbeat). A row whose heartbeat
//! stopped is ignored, and later deleted, by whoever reads.

use std::time::Duration;

use super::{CHANNEL, Param, PostgresStore};
use crate::session::SessionId;
use crate::store::{Present, StoreError};

/// Rows not rewritten for this long are deleted (long after they stopped counting).
const DELETE_AFTER_SECS: f64 = 3600.0;

impl PostgresStore {
    /// This instance's row: its instance id without the separator notifications put after it.
    fn presence_key(&self) -> &str {
        self.instance.trim_end()
    }

    pub(in crate::store) async fn share_presence(
        &self,
        here: &[Present],
        announce: bool,
    ) -> Result<(), StoreError> {
        let roster = encode(here);
        let notice = format!("{}p", self.instance);
        self.retry(|client| {
            let (roster, notice) = (&roster, &notice);
            async move {
                let statement = client
                    .prepare_cached(
                        "WITH written AS (
                             INSERT INTO presence (instance, roster, beat_at) VALUES ($1, $2, now())
                             ON CONFLICT (instance)
                             DO UPDATE SET roster = excluded.roster, beat_at = now()
                             RETURNING 1)
                         SELECT pg_notify($3, $4) FROM written WHERE $5",
                    )
                    .await?;
                let params: [&Param<'_>; 5] =
                    [&self.presence_key(), roster, &CHANNEL, notice, &announce];
                client.execute(&statement, &params).await?;
                Ok(())
            }
        })
        .await
    }

    pub(in crate::store) async fn others_presence(
        &self,
        fresh: Duration,
    ) -> Result<Vec<Present>, StoreError> {
        let rosters: Vec<String> = self
            .retry(|client| async move {
                let statement = client
                    .prepare_cached(
                        "SELECT roster FROM presence
                         WHERE instance <> $1 AND beat_at > now() - make_interval(secs => $2)",
                    )
                    .await?;
                let params: [&Param<'_>; 2] = [&self.presence_key(), &fresh.as_secs_f64()];
                let rows = client.query(&statement, &params).await?;
                rows.iter()
                    .map(|row| row.try_get(0).map_err(StoreError::from))
                    .collect()
            })
            .await?;
        self.execute(
            "DELETE FROM presence WHERE beat_at < now() - make_interval(secs => $1)",
            &[&DELETE_AFTER_SECS],
        )
        .await?;
        Ok(rosters.iter().flat_map(|roster| decode(roster)).collect())
    }

    pub(in crate::store) async fn withdraw_presence(&self) -> Result<(), StoreError> {
        let notice = format!("{}p", self.instance);
        self.retry(|client| {
            let notice = &notice;
            async move {
                let statement = client
                    .prepare_cached(
                        "WITH gone AS (DELETE FROM presence WHERE instance = $1 RETURNING 1)
                         SELECT pg_notify($2, $3)",
                    )
                    .await?;
                let params: [&Param<'_>; 3] = [&self.presence_key(), &CHANNEL, notice];
                client.execute(&statement, &params).await?;
                Ok(())
            }
        })
        .await
    }
}

fn encode(here: &[Present]) -> String {
    let entries: Vec<(String, &str, bool)> = here
        .iter()
        .map(|p| (p.id.to_string(), p.name.as_str(), p.crowded))
        .collect();
    serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned())
}

/// A row's list; what does not read as one (another program's row) counts as nobody.
fn decode(roster: &str) -> Vec<Present> {
    let entries: Vec<Vec<serde_json::Value>> = serde_json::from_str(roster).unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|entry| match entry.as_slice() {
            [id, name, rest @ ..] if rest.len() <= 1 => Some(Present {
                id: id.as_str()?.parse::<SessionId>().ok()?,
                name: name.as_str()?.to_owned(),
                crowded: rest.first().is_some_and(|c| c.as_bool() == Some(true)),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_reads_back_as_written_and_junk_reads_as_nobody() {
        let here = vec![
            Present {
                id: SessionId::generate(),
                name: "Ada \"the\" first".into(),
                crowded: false,
            },
            Present {
                id: SessionId::generate(),
                name: String::new(),
                crowded: false,
            },
            Present {
                id: SessionId::generate(),
                name: "many".into(),
                crowded: true,
            },
        ];
        assert_eq!(decode(&encode(&here)), here);
        let id = SessionId::generate();
        let older = format!(r#"[["{id}", "Ada"]]"#);
        assert_eq!(
            decode(&older),
            vec![Present {
                id,
                name: "Ada".into(),
                crowded: false
            }]
        );
        assert!(decode("not json").is_empty());
        assert_eq!(decode(r#"[["nope", "x"]]"#), Vec::new());
    }
}
