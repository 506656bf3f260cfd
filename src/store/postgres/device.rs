//! A session's devices on PostgreSQL: every write takes the session's advisory lock, so a
//! device seen on one instance while another signs it out is either signed out after, or never
//! written again; each change is announced to the other instances when it commits.

use deadpool_postgres::GenericClient;

use super::{CHANNEL, LOCK_SESSION, NOTIFY, Param, PostgresStore, settings_from};
use crate::clock::Millis;
use crate::device::Device;
use crate::session::{DeviceId, SessionId, Who};
use crate::store::device::{AddedDevice, Ended, device_row};
use crate::store::{StoreError, StoredSettings, sql_int};

const COLUMNS: &str = "SELECT device_id, name, added_at, added_by, active_at FROM devices
                       WHERE session_id = $1 ORDER BY added_at, device_id";

const REMEMBER_SIGNED_OUT: &str =
    "INSERT INTO signed_out (device_id, signed_out_at) VALUES ($1, $2)
                                   ON CONFLICT (device_id) DO NOTHING";

/// For each cookie of the sessions `$1` and devices `$2` (in pairs): its session's settings row
/// (nulls without one), when its device was signed out and when its session was forgotten (null
/// when not): three primary-key lookups per cookie, in one round trip.
const CHECK: &str = "SELECT w.session_id, s.username, s.theme, s.version, s.read_at,
                            (SELECT signed_out_at FROM signed_out o
                              WHERE o.device_id = w.device_id),
                            (SELECT forgotten_at FROM forgotten f
                              WHERE f.session_id = w.session_id),
                            w.device_id
                     FROM unnest($1::uuid[], $2::uuid[]) AS w (session_id, device_id)
                     LEFT JOIN settings s ON s.session_id = w.session_id";

/// What a cookie check read: whether each was ended, and the settings row of each session.
pub(in crate::store) type Checked = (Ended, Vec<(SessionId, Option<StoredSettings>)>);

impl PostgresStore {
    pub(in crate::store) async fn ended(&self, asked: &[Who]) -> Result<Checked, StoreError> {
        let sessions: &Vec<_> = &asked.iter().map(|who| who.session.as_uuid()).collect();
        let devices: &Vec<_> = &asked.iter().map(|who| who.device.as_uuid()).collect();
        self.retry(|client| async move {
            let statement = client.prepare_cached(CHECK).await?;
            let rows = client.query(&statement, &[sessions, devices]).await?;
            let (mut ended, mut settings) = (Ended::default(), Vec::with_capacity(rows.len()));
            for row in &rows {
                let session = SessionId::from_uuid(row.try_get(0)?);
                let version: Option<i64> = row.try_get(3)?;
                let stored = match version {
                    Some(_) => Some(settings_from(row, 1)?),
                    None => None,
                };
                settings.push((session, stored));
                if let Some(at) = row.try_get(5)? {
                    ended
                        .devices
                        .push((DeviceId::from_uuid(row.try_get(7)?), at));
                }
                if let Some(at) = row.try_get(6)? {
                    ended.sessions.push((session, at));
                }
            }
            Ok((ended, settings))
        })
        .await
    }

    /// The notice that `session`'s devices changed.
    fn devices_notice(&self, session: SessionId) -> String {
        format!("{}v {session}", self.instance)
    }

    pub(in crate::store) async fn devices(
        &self,
        session: SessionId,
    ) -> Result<Vec<Device>, StoreError> {
        self.retry(|client| async move { devices_of(&client, session).await })
            .await
    }

    pub(in crate::store) async fn see_device(
        &self,
        session: SessionId,
        device: DeviceId,
        name: String,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let notice = &self.devices_notice(session);
        let (key, name) = (&session.to_key(), &name);
        let (id, session) = (device.as_uuid(), session.as_uuid());
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(LOCK_SESSION, &[key]).await?;
            let params: [&Param<'_>; 4] = [&id, &session, name, &now];
            let seen = tx
                .execute(
                    "INSERT INTO devices AS d
                         (device_id, session_id, name, added_at, added_by, active_at)
                     SELECT $1, $2, $3, $4, 'first', $4
                     WHERE NOT EXISTS (SELECT 1 FROM signed_out WHERE device_id = $1)
                     ON CONFLICT (device_id) DO UPDATE SET
                         active_at = greatest(d.active_at, excluded.active_at),
                         name = CASE d.name WHEN '' THEN excluded.name ELSE d.name END
                     WHERE d.session_id = excluded.session_id",
                    &params,
                )
                .await?;
            if seen > 0 {
                tx.execute(NOTIFY, &[&CHANNEL, notice]).await?;
            }
            tx.commit().await?;
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
        let notice = &format!("{}j {session} {device}", self.instance);
        let (key, name, max) = (&session.to_key(), &name, sql_int(max));
        let (id, session) = (device.as_uuid(), session.as_uuid());
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            // The lock makes the count and the insert one step for every instance.
            tx.execute(LOCK_SESSION, &[key]).await?;
            let count: i64 = tx
                .query_one(
                    "SELECT count(*) FROM devices WHERE session_id = $1",
                    &[&session],
                )
                .await?
                .try_get(0)?;
            if count >= max {
                return Ok(AddedDevice::Full);
            }
            let params: [&Param<'_>; 4] = [&id, &session, name, &now];
            tx.execute(
                "INSERT INTO devices (device_id, session_id, name, added_at, added_by, active_at)
                 VALUES ($1, $2, $3, $4, 'code', $4) ON CONFLICT (device_id) DO NOTHING",
                &params,
            )
            .await?;
            tx.execute(NOTIFY, &[&CHANNEL, notice]).await?;
            tx.commit().await?;
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
        let notice = &self.devices_notice(session);
        let name = &name;
        let (id, session) = (device.as_uuid(), session.as_uuid());
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            let renamed = tx
                .execute(
                    "UPDATE devices SET name = $3 WHERE device_id = $1 AND session_id = $2",
                    &[&id, &session, name],
                )
                .await?;
            if renamed > 0 {
                tx.execute(NOTIFY, &[&CHANNEL, notice]).await?;
            }
            tx.commit().await?;
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
        let (key, name) = (&session.to_key(), &name);
        let (session, old, new) = (session.as_uuid(), old.as_uuid(), new.as_uuid());
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(LOCK_SESSION, &[key]).await?;
            let moved = tx
                .execute(
                    "UPDATE devices SET device_id = $3, active_at = greatest(active_at, $4)
                     WHERE device_id = $2 AND session_id = $1",
                    &[&session, &old, &new, &now],
                )
                .await?;
            if moved == 0 {
                let params: [&Param<'_>; 4] = [&new, &session, name, &now];
                tx.execute(
                    "INSERT INTO devices
                         (device_id, session_id, name, added_at, added_by, active_at)
                     VALUES ($1, $2, $3, $4, 'first', $4)",
                    &params,
                )
                .await?;
            }
            tx.commit().await?;
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
        let notices: &Vec<String> = &devices
            .iter()
            .map(|device| format!("{}o {session} {device} {now}", self.instance))
            .collect();
        let devices = &devices;
        let key = &session.to_key();
        let session = session.as_uuid();
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(LOCK_SESSION, &[key]).await?;
            for (device, notice) in devices.iter().zip(notices) {
                let id = device.as_uuid();
                tx.execute(
                    "DELETE FROM devices WHERE device_id = $1 AND session_id = $2",
                    &[&id, &session],
                )
                .await?;
                tx.execute(REMEMBER_SIGNED_OUT, &[&id, &now]).await?;
                tx.execute(NOTIFY, &[&CHANNEL, notice]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    pub(in crate::store) async fn signed_out(
        &self,
        limit: usize,
    ) -> Result<Vec<(DeviceId, Millis)>, StoreError> {
        let limit = sql_int(limit);
        self.retry(|client| async move {
            let rows = client
                .query(
                    "SELECT device_id, signed_out_at FROM signed_out
                     ORDER BY signed_out_at DESC LIMIT $1",
                    &[&limit],
                )
                .await?;
            let mut signed_out = Vec::with_capacity(rows.len());
            for row in &rows {
                signed_out.push((DeviceId::from_uuid(row.try_get(0)?), row.try_get(1)?));
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
        let instance = &self.instance;
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            // The outer condition is checked again on each locked row, so a device seen since
            // the inner scan is kept.
            let rows = tx
                .query(
                    "DELETE FROM devices WHERE device_id IN
                         (SELECT device_id FROM devices WHERE active_at < $1
                          ORDER BY active_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                       AND active_at < $1
                     RETURNING session_id, device_id",
                    &[&cutoff, &limit],
                )
                .await?;
            let mut pruned = Vec::with_capacity(rows.len());
            for row in &rows {
                let session = SessionId::from_uuid(row.try_get(0)?);
                let device = DeviceId::from_uuid(row.try_get(1)?);
                tx.execute(REMEMBER_SIGNED_OUT, &[&device.as_uuid(), &now])
                    .await?;
                let notice = format!("{instance}o {session} {device} {now}");
                tx.execute(NOTIFY, &[&CHANNEL, &notice]).await?;
                pruned.push((session, device));
            }
            tx.commit().await?;
            Ok(pruned)
        })
        .await
    }

    pub(in crate::store) async fn prune_signed_out(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.retry(|client| async move {
            let deleted = client
                .execute(
                    "DELETE FROM signed_out WHERE signed_out_at < $1",
                    &[&before],
                )
                .await?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
        .await
    }
}

/// The devices of `session`, first added first, read on `client` (a connection, or a
/// transaction's snapshot).
pub(super) async fn devices_of(
    client: &impl GenericClient,
    session: SessionId,
) -> Result<Vec<Device>, StoreError> {
    // Prepared once per connection: a settings page view reads it, and an unprepared statement
    // is a round trip more each time.
    let statement = client.prepare_cached(COLUMNS).await?;
    let rows = client.query(&statement, &[&session.as_uuid()]).await?;
    let mut devices = Vec::with_capacity(rows.len());
    for row in &rows {
        let added_by: String = row.try_get(3)?;
        devices.push(device_row(
            DeviceId::from_uuid(row.try_get(0)?),
            row.try_get(1)?,
            row.try_get(2)?,
            &added_by,
            row.try_get(4)?,
        ));
    }
    Ok(devices)
}
