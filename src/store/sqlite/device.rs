//! A session's devices on SQLite, written through the writer.

use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::clock::Millis;
use crate::device::Device;
use crate::session::{DeviceId, SessionId};
use crate::store::device::{AddedDevice, device_row};
use crate::store::{StoreError, sql_int};

/// Remembers device `?1` as signed out at `?2`.
const REMEMBER_SIGNED_OUT: &str =
    "INSERT INTO signed_out (device_id, signed_out_at) VALUES (?1, ?2)
                                   ON CONFLICT (device_id) DO NOTHING";

impl SqliteStore {
    pub(in crate::store) async fn devices(
        &self,
        session: SessionId,
    ) -> Result<Vec<Device>, StoreError> {
        self.run(move |conn| devices_of(conn, session)).await
    }

    pub(in crate::store) async fn see_device(
        &self,
        session: SessionId,
        device: DeviceId,
        name: String,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(move |tx| {
                let seen = tx
                    .prepare_cached(
                        "INSERT INTO devices
                             (device_id, session_id, name, added_at, added_by, active_at)
                         SELECT ?1, ?2, ?3, ?4, 'first', ?4
                         WHERE NOT EXISTS (SELECT 1 FROM signed_out WHERE device_id = ?1)
                         ON CONFLICT (device_id) DO UPDATE SET
                             active_at = max(active_at, ?4),
                             name = CASE name WHEN '' THEN ?3 ELSE name END
                         WHERE session_id = ?2",
                    )?
                    .execute(params![device.to_key(), session.to_key(), name, now])?;
                Ok(seen > 0)
            })
            .await
    }

    pub(in crate::store) async fn add_device(
        &self,
        session: SessionId,
        device: DeviceId,
        name: String,
        now: Millis,
        max: usize,
    ) -> Result<AddedDevice, StoreError> {
        let max = sql_int(max);
        self.writer
            .write(move |tx| {
                let count: i64 = tx
                    .prepare_cached("SELECT count(*) FROM devices WHERE session_id = ?1")?
                    .query_row([session.to_key()], |row| row.get(0))?;
                if count >= max {
                    return Ok(AddedDevice::Full);
                }
                tx.prepare_cached(
                    "INSERT INTO devices (device_id, session_id, name, added_at, added_by, active_at)
                     VALUES (?1, ?2, ?3, ?4, 'code', ?4)
                     ON CONFLICT (device_id) DO NOTHING",
                )?
                .execute(params![device.to_key(), session.to_key(), name, now])?;
                Ok(AddedDevice::Added)
            })
            .await
    }

    pub(in crate::store) async fn rename_device(
        &self,
        session: SessionId,
        device: DeviceId,
        name: String,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(move |tx| {
                let renamed = tx
                    .prepare_cached(
                        "UPDATE devices SET name = ?3 WHERE device_id = ?1 AND session_id = ?2",
                    )?
                    .execute(params![device.to_key(), session.to_key(), name])?;
                Ok(renamed > 0)
            })
            .await
    }

    pub(in crate::store) async fn move_device(
        &self,
        session: SessionId,
        old: DeviceId,
        new: DeviceId,
        name: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |tx| {
                let moved = tx
                    .prepare_cached(
                        "UPDATE devices SET device_id = ?3, active_at = max(active_at, ?4)
                         WHERE device_id = ?2 AND session_id = ?1",
                    )?
                    .execute(params![session.to_key(), old.to_key(), new.to_key(), now])?;
                if moved == 0 {
                    tx.prepare_cached(
                        "INSERT INTO devices
                             (device_id, session_id, name, added_at, added_by, active_at)
                         VALUES (?1, ?2, ?3, ?4, 'first', ?4)",
                    )?
                    .execute(params![
                        new.to_key(),
                        session.to_key(),
                        name,
                        now
                    ])?;
                }
                Ok(())
            })
            .await
    }

    pub(in crate::store) async fn sign_out_devices(
        &self,
        session: SessionId,
        devices: Vec<DeviceId>,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |tx| {
                for device in devices {
                    tx.prepare_cached(
                        "DELETE FROM devices WHERE device_id = ?1 AND session_id = ?2",
                    )?
                    .execute(params![device.to_key(), session.to_key()])?;
                    tx.prepare_cached(REMEMBER_SIGNED_OUT)?
                        .execute(params![device.to_key(), now])?;
                }
                Ok(())
            })
            .await
    }

    pub(in crate::store) async fn signed_out(
        &self,
        limit: usize,
    ) -> Result<Vec<(DeviceId, Millis)>, StoreError> {
        let limit = sql_int(limit);
        self.run(move |conn| {
            let mut statement = conn.prepare(
                "SELECT device_id, signed_out_at FROM signed_out
                 ORDER BY signed_out_at DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Millis>(1)?))
            })?;
            let mut signed_out = Vec::new();
            for row in rows {
                let (id, at) = row?;
                if let Ok(id) = id.parse() {
                    signed_out.push((id, at));
                }
            }
            Ok(signed_out)
        })
        .await
    }

    pub(in crate::store) async fn prune_devices_batch(
        &self,
        cutoff: Millis,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<(SessionId, DeviceId)>, StoreError> {
        let limit = sql_int(limit);
        self.writer
            .write(move |tx| {
                let mut statement = tx.prepare_cached(
                    "DELETE FROM devices WHERE device_id IN
                         (SELECT device_id FROM devices WHERE active_at < ?1
                          ORDER BY active_at LIMIT ?2)
                     RETURNING session_id, device_id",
                )?;
                let pruned = statement
                    .query_map(params![cutoff, limit], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                drop(statement);
                let mut devices = Vec::with_capacity(pruned.len());
                for (session, device) in pruned {
                    if let (Ok(session), Ok(device)) = (session.parse(), device.parse()) {
                        tx.prepare_cached(REMEMBER_SIGNED_OUT)?
                            .execute(params![DeviceId::to_key(device), now])?;
                        devices.push((session, device));
                    }
                }
                Ok(devices)
            })
            .await
    }

    pub(in crate::store) async fn prune_signed_out(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.writer
            .write(move |tx| {
                tx.prepare_cached("DELETE FROM signed_out WHERE signed_out_at < ?1")?
                    .execute([before])
            })
            .await
    }
}

/// The devices of `session`, first added first.
pub(super) fn devices_of(conn: &Connection, session: SessionId) -> rusqlite::Result<Vec<Device>> {
    let mut statement = conn.prepare_cached(
        "SELECT device_id, name, added_at, added_by, active_at FROM devices
         WHERE session_id = ?1 ORDER BY added_at, device_id",
    )?;
    let rows = statement.query_map([session.to_key()], |row| {
        let id: String = row.get(0)?;
        let added_by: String = row.get(3)?;
        Ok((id, row.get(1)?, row.get(2)?, added_by, row.get(4)?))
    })?;
    let mut devices = Vec::new();
    for row in rows {
        let (id, name, added_at, added_by, active_at) = row?;
        if let Ok(id) = id.parse() {
            devices.push(device_row(id, name, added_at, &added_by, active_at));
        }
    }
    Ok(devices)
}

/// Deletes the devices of `session` (it was forgotten, or pruned).
pub(super) fn delete_devices(tx: &Connection, session: SessionId) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM devices WHERE session_id = ?1")?
        .execute([session.to_key()])
}
