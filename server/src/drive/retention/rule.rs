//! Which versions of a live file the retention rule removes: pure, property-tested.
//!
//! A version stands for the file's content from its creation until the next version
//! replaced it. The rule keeps a version while that content is recent: a version is kept
//! when it is the file's current one, or when it is among the `keep_versions` newest and
//! was replaced less than `keep_for_ms` ago (the newest version was never replaced).
//! So every content the file had within the last `keep_for_ms` stays restorable, up to
//! the count. Measuring from the replacement, not the creation, keeps a rarely edited
//! file's previous content for the whole period after the edit, as Dropbox's version
//! history does.
//!
//! After a restore the current version may be older than others; the versions newer than
//! it count as replaced when the next version was made (later than the restore, so they
//! are kept at least as long as the rule asks).

/// The retention rule of versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRule {
    /// How many of the newest versions may be kept (`None`: no limit); the current
    /// version is kept in any case.
    pub keep_versions: Option<u32>,
    /// How long a replaced version is kept, in milliseconds.
    pub keep_for_ms: i64,
}

/// A version as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStamp {
    pub id: String,
    pub created_ms: i64,
}

impl VersionRule {
    /// The ids of `versions` (a file's versions, newest first: by creation time, then
    /// id, as `store::versions` lists them) that the rule removes at `now_ms`.
    pub fn versions_to_remove(
        &self,
        versions: &[VersionStamp],
        current: Option<&str>,
        now_ms: i64,
    ) -> Vec<String> {
        let cutoff = now_ms.saturating_sub(self.keep_for_ms);
        let limit = self.keep_versions.map_or(usize::MAX, |n| n as usize);
        versions
            .iter()
            .enumerate()
            .filter(|(rank, version)| {
                if Some(version.id.as_str()) == current {
                    return false;
                }
                let replaced_ms = match rank.checked_sub(1) {
                    Some(newer) => versions[newer].created_ms,
                    None => return *rank >= limit,
                };
                *rank >= limit || replaced_ms <= cutoff
            })
            .map(|(_, version)| version.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 24 * 3600 * 1000;

    fn stamps(created: &[i64]) -> Vec<VersionStamp> {
        // Newest first, ids by creation order.
        let mut out: Vec<VersionStamp> = created
            .iter()
            .enumerate()
            .map(|(i, &created_ms)| VersionStamp {
                id: format!("v{i:04}"),
                created_ms,
            })
            .collect();
        out.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        out
    }

    #[test]
    fn a_replaced_version_stays_for_the_period_after_its_replacement() {
        let rule = VersionRule {
            keep_versions: None,
            keep_for_ms: 30 * DAY,
        };
        // Made 100 days ago, replaced 10 days ago: it was the file's content 10 days
        // ago, within the period, so it is kept.
        let versions = stamps(&[0, 90 * DAY]);
        let now = 100 * DAY;
        assert!(rule
            .versions_to_remove(&versions, Some("v0001"), now)
            .is_empty());
        // 30 days after its replacement it goes; the current one never does.
        assert_eq!(
            rule.versions_to_remove(&versions, Some("v0001"), 120 * DAY),
            vec!["v0000".to_owned()]
        );
        assert!(rule
            .versions_to_remove(&versions[..1], Some("v0001"), 1000 * DAY)
            .is_empty());
    }

    #[test]
    fn the_count_keeps_the_newest_and_the_current() {
        let rule = VersionRule {
            keep_versions: Some(2),
            keep_for_ms: 1000 * DAY,
        };
        let versions = stamps(&[1, 2, 3, 4, 5]);
        assert_eq!(
            rule.versions_to_remove(&versions, Some("v0004"), 10),
            vec!["v0002", "v0001", "v0000"]
        );
        // A restored old version is current: kept beside the two newest.
        assert_eq!(
            rule.versions_to_remove(&versions, Some("v0000"), 10),
            vec!["v0002", "v0001"]
        );
    }

    #[test]
    fn keeping_for_zero_keeps_only_the_current_version() {
        let rule = VersionRule {
            keep_versions: None,
            keep_for_ms: 0,
        };
        let versions = stamps(&[1, 2, 3]);
        assert_eq!(
            rule.versions_to_remove(&versions, Some("v0002"), 3),
            vec!["v0001", "v0000"]
        );
    }

    fn history() -> impl Strategy<Value = (Vec<i64>, usize, i64, Option<u32>, i64)> {
        (
            prop::collection::vec(0..200 * DAY, 1..40),
            any::<prop::sample::Index>(),
            0..100 * DAY,
            prop::option::of(1u32..10),
            0..300 * DAY,
        )
            .prop_map(|(created, current, keep_for, keep, now)| {
                let current = current.index(created.len());
                (created, current, keep_for, keep, now)
            })
    }

    proptest! {
        #[test]
        fn the_rule_keeps_what_it_promises(
            (created, current, keep_for_ms, keep_versions, now) in history()
        ) {
            let rule = VersionRule { keep_versions, keep_for_ms };
            let versions = stamps(&created);
            let now = now.max(*created.iter().max().unwrap());
            let current_id = versions[current].id.clone();
            let removed = rule.versions_to_remove(&versions, Some(&current_id), now);
            let kept: Vec<&VersionStamp> =
                versions.iter().filter(|v| !removed.contains(&v.id)).collect();

            // The current version is never removed; removal names only known versions.
            prop_assert!(!removed.contains(&current_id));
            prop_assert!(removed.iter().all(|id| versions.iter().any(|v| &v.id == id)));
            // At most the count, plus the current one.
            if let Some(n) = keep_versions {
                prop_assert!(kept.len() <= n as usize + 1);
            }
            // Within the count, the content of every instant of the period is kept: the
            // version current at t (the newest made by t) for every t in the period.
            for (rank, version) in versions.iter().enumerate() {
                let within_count = keep_versions.is_none_or(|n| rank < n as usize);
                let replaced = rank.checked_sub(1).map(|newer| versions[newer].created_ms);
                let recent = replaced.is_none_or(|at| at > now - keep_for_ms);
                if within_count && recent {
                    prop_assert!(!removed.contains(&version.id), "{} removed", version.id);
                }
            }
            // Applying the rule again to what it kept removes nothing more, and later it
            // only removes more.
            let kept_owned: Vec<VersionStamp> = kept.into_iter().cloned().collect();
            prop_assert!(rule.versions_to_remove(&kept_owned, Some(&current_id), now).is_empty());
            let later = rule.versions_to_remove(&versions, Some(&current_id), now + DAY);
            prop_assert!(removed.iter().all(|id| later.contains(id)));
        }
    }
}
