//! Sharing a folder with another account, and ending it.

use meridian_shared::drive::ShareMode;

use super::{announce, authorize, live_folder, owner_of, Access, DriveError};
use crate::drive::store;
use crate::realtime::events::Events;
use crate::AppState;

/// Shares a folder (owner only) with an account, read-only or read-write.
pub async fn share_folder(
    state: &AppState,
    user_id: &str,
    folder_id: &str,
    username: &str,
    mode: ShareMode,
) -> Result<(), DriveError> {
    let key = crate::auth::password::username_key(username.trim());
    let member = crate::auth::store::user_by_username_key(&state.db.pool, &key)
        .await?
        .map(|row| row.user)
        .ok_or_else(|| DriveError::UnknownUser(username.trim().to_owned()))?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, user_id).await?;
        let (folder, access) = authorize(&mut tx, user_id, folder_id).await?;
        if access != Access::Owner {
            return Err(DriveError::OwnerOnly);
        }
        live_folder(&folder)?;
        if member.id == user_id {
            return Err(DriveError::ShareWithOwner);
        }
        store::upsert_share(&mut tx, folder_id, &member.id, mode, now).await?;
        announce(&mut tx, &mut events, user_id, seq, &[folder_id], &[]).await?;
        tx.commit().await?;
    }
    events.deliver();
    Ok(())
}

/// Ends a share (the owner, or the account it was shared with leaving).
pub async fn unshare_folder(
    state: &AppState,
    user_id: &str,
    folder_id: &str,
    member_id: &str,
) -> Result<(), DriveError> {
    let owner = owner_of(state, user_id, folder_id).await?;
    if owner != user_id && member_id != user_id {
        return Err(DriveError::OwnerOnly);
    }
    let mut events = Events::new(&state.hub);
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        if !store::remove_share(&mut tx, folder_id, member_id).await? {
            return Err(DriveError::ShareNotFound(folder_id.to_owned()));
        }
        announce(
            &mut tx,
            &mut events,
            &owner,
            seq,
            &[folder_id],
            &[member_id],
        )
        .await?;
        tx.commit().await?;
    }
    events.deliver();
    Ok(())
}
