//! Folders, moves and renames, deletes, restores.

use meridian_shared::drive::names::{name_key, validate_name};
use meridian_shared::drive::{Node, NodeKind};

use super::{announce, authorize, owner_of, target_folder, undelete_chain, DriveError};
use crate::drive::store::{self, NewNode, TOP};
use crate::realtime::events::Events;
use crate::AppState;

/// Creates a folder.
pub async fn create_folder(
    state: &AppState,
    user_id: &str,
    parent_id: Option<&str>,
    name: &str,
) -> Result<Node, DriveError> {
    let name = validate_name(name)?;
    let owner = match parent_id {
        Some(p) => owner_of(state, user_id, p).await?,
        None => user_id.to_owned(),
    };
    let id = state.ids.next_id()?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let node = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (owner, parent) = target_folder(&mut tx, user_id, parent_id).await?;
        if parent != TOP
            && store::ancestry(&mut tx, &parent).await?.len() as i64 >= store::MAX_DEPTH
        {
            return Err(DriveError::TooDeep);
        }
        let key = name_key(&name);
        if store::live_child(&mut tx, &owner, &parent, &key)
            .await?
            .is_some()
        {
            return Err(DriveError::NameTaken(name));
        }
        store::insert_node(
            &mut tx,
            NewNode {
                id: &id,
                owner_id: &owner,
                parent_id: &parent,
                name: &name,
                name_key: &key,
                kind: NodeKind::Folder,
                seq,
                now_ms: now,
            },
        )
        .await?;
        announce(&mut tx, &mut events, &owner, seq, &[&id], &[]).await?;
        let node = store::node(&mut tx, &id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        node
    };
    events.deliver();
    Ok(node.into())
}

/// Renames and/or moves a node within its drive.
pub async fn move_node(
    state: &AppState,
    user_id: &str,
    node_id: &str,
    parent_id: Option<&str>,
    name: &str,
) -> Result<Node, DriveError> {
    let name = validate_name(name)?;
    let owner = owner_of(state, user_id, node_id).await?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let node = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (node, access) = authorize(&mut tx, user_id, node_id).await?;
        access.may_write()?;
        if node.deleted {
            return Err(DriveError::Deleted(node.id));
        }
        let (new_owner, parent) = target_folder(&mut tx, user_id, parent_id).await?;
        if new_owner != node.owner_id {
            return Err(DriveError::CrossDrive);
        }
        if parent != TOP {
            let chain = store::ancestry(&mut tx, &parent).await?;
            if chain.iter().any(|id| id == &node.id) {
                return Err(DriveError::Cycle);
            }
            if chain.len() as i64 >= store::MAX_DEPTH {
                return Err(DriveError::TooDeep);
            }
        }
        let key = name_key(&name);
        if let Some(other) = store::live_child(&mut tx, &owner, &parent, &key).await? {
            if other.id != node.id {
                return Err(DriveError::NameTaken(name));
            }
        }
        // Those who saw it in its old place hear of the move too.
        let before = store::sharers_of(&mut tx, &node.id).await?;
        store::place_node(&mut tx, &node.id, &parent, &name, &key, false, seq, now).await?;
        let before: Vec<&str> = before.iter().map(String::as_str).collect();
        announce(&mut tx, &mut events, &owner, seq, &[&node.id], &before).await?;
        let node = store::node(&mut tx, node_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        node
    };
    events.deliver();
    Ok(node.into())
}

/// Deletes a node and everything under it (kept as tombstones, restorable). Deleting a
/// deleted node changes nothing. With `if_version`, a file whose current version is
/// another is not deleted (`VersionChanged`): a delete never silently beats an edit.
pub async fn delete_node(
    state: &AppState,
    user_id: &str,
    node_id: &str,
    if_version: Option<&str>,
) -> Result<(), DriveError> {
    let owner = owner_of(state, user_id, node_id).await?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (node, access) = authorize(&mut tx, user_id, node_id).await?;
        access.may_write()?;
        if node.deleted {
            tx.rollback().await?;
            return Ok(());
        }
        if if_version.is_some() && node.version_id.as_deref() != if_version {
            return Err(DriveError::VersionChanged);
        }
        let sharers = store::sharers_of(&mut tx, &node.id).await?;
        let mut gone = store::live_descendants(&mut tx, &node.id).await?;
        gone.push(node.id.clone());
        for id in &gone {
            store::mark_deleted(&mut tx, id, seq, now).await?;
        }
        let sharers: Vec<&str> = sharers.iter().map(String::as_str).collect();
        announce(&mut tx, &mut events, &owner, seq, &[], &sharers).await?;
        tx.commit().await?;
    }
    events.deliver();
    Ok(())
}

/// Brings back a deleted node with the folders above it (renamed `name (2)` if its name
/// was taken meanwhile); a folder brings back what was deleted with it.
pub async fn restore_node(
    state: &AppState,
    user_id: &str,
    node_id: &str,
) -> Result<Node, DriveError> {
    let owner = owner_of(state, user_id, node_id).await?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let node = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (node, access) = authorize(&mut tx, user_id, node_id).await?;
        access.may_write()?;
        if !node.deleted {
            tx.rollback().await?;
            return Ok(node.into());
        }
        let deleted_at = node.seq;
        undelete_chain(&mut tx, &node, seq, now).await?;
        if node.kind == NodeKind::Folder {
            for id in store::deleted_descendants_at(&mut tx, &node.id, deleted_at).await? {
                store::undelete(&mut tx, &id, seq, now).await?;
            }
        }
        announce(&mut tx, &mut events, &owner, seq, &[&node.id], &[]).await?;
        let node = store::node(&mut tx, node_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        node
    };
    events.deliver();
    Ok(node.into())
}
