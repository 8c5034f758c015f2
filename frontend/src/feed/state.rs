//! The feed page's state as a pure reducer.
//!
//! Invariants:
//! - A post id is shown at most once (a page appended after a cursor, a post sent, a
//!   cached feed: duplicates are dropped).
//! - The banner counts distinct announced posts that are not shown yet and were
//!   announced after the page first saw the topic (events replayed at subscription are
//!   the baseline, not news); a fresh first page resets it.
//! - A post composed offline stays pending (kept in IndexedDB) until the server
//!   answered 201 for it.

use std::collections::HashSet;
use std::rc::Rc;

use meridian_shared::feed::{FeedItem, FeedPage, FeedPost, FeedProfile, FeedReason};
use yew::Reducible;

/// A post composed while the server could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingPost {
    pub local_id: String,
    pub text: String,
    #[serde(default)]
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedModel {
    pub items: Vec<FeedItem>,
    pub next_cursor: Option<String>,
    pub loading: bool,
    /// Showing the last feed kept in IndexedDB (the server was not reached).
    pub from_cache: bool,
    pub error: Option<String>,
    /// Announced posts not shown yet, in arrival order.
    pub new_posts: Vec<String>,
    /// The highest event sequence number seen on the account's topic.
    pub known_seq: Option<u64>,
    pub pending: Vec<PendingPost>,
    pub profile: Option<FeedProfile>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeedAction {
    Loading,
    /// A page from the server: the first (replaces) or a later one (appends).
    Loaded {
        page: FeedPage,
        append: bool,
    },
    /// The last feed kept offline, shown when the server could not be reached.
    Cached(Vec<FeedItem>),
    Failed(String),
    /// Events of the account's topic: `(seq, post id)` of each new-post notice.
    Announced(Vec<(u64, String)>),
    /// A post composed offline, kept until sent.
    Queued(PendingPost),
    /// The pending posts found in IndexedDB.
    PendingLoaded(Vec<PendingPost>),
    /// The server took a post (composed now or sent from the pending ones).
    Posted {
        local_id: Option<String>,
        post: FeedPost,
    },
    Liked {
        post_id: String,
        liked: bool,
        likes: u64,
    },
    ProfileLoaded(FeedProfile),
    ProfileClosed,
    Followed {
        user_id: String,
        followed: bool,
        followers: u64,
    },
}

/// The banner's text, if there is news.
pub fn banner(new_posts: usize) -> Option<String> {
    match new_posts {
        0 => None,
        1 => Some("1 new post".to_owned()),
        n => Some(format!("{n} new posts")),
    }
}

fn own_item(post: FeedPost) -> FeedItem {
    FeedItem {
        post,
        reasons: vec![FeedReason {
            code: "yours".to_owned(),
            detail: "your post".to_owned(),
        }],
    }
}

impl FeedModel {
    pub fn reduce(mut self, action: FeedAction) -> FeedModel {
        match action {
            FeedAction::Loading => {
                self.loading = true;
                self.error = None;
            }
            FeedAction::Loaded { page, append } => {
                self.loading = false;
                self.error = None;
                self.from_cache = false;
                if !append {
                    self.items.clear();
                    self.new_posts.clear();
                }
                let mut shown: HashSet<String> =
                    self.items.iter().map(|i| i.post.id.clone()).collect();
                for item in page.items {
                    if shown.insert(item.post.id.clone()) {
                        self.items.push(item);
                    }
                }
                self.new_posts.retain(|id| !shown.contains(id));
                self.next_cursor = page.next_cursor;
            }
            FeedAction::Cached(items) => {
                self.loading = false;
                if self.items.is_empty() {
                    let mut shown = HashSet::new();
                    self.items = items
                        .into_iter()
                        .filter(|i| shown.insert(i.post.id.clone()))
                        .collect();
                    self.from_cache = true;
                    self.next_cursor = None;
                }
            }
            FeedAction::Failed(message) => {
                self.loading = false;
                self.error = Some(message);
            }
            FeedAction::Announced(events) => {
                let max = events.iter().map(|(seq, _)| *seq).max();
                match self.known_seq {
                    None => self.known_seq = max.or(Some(0)),
                    Some(known) => {
                        for (seq, post_id) in events {
                            if seq > known
                                && !self.items.iter().any(|i| i.post.id == post_id)
                                && !self.new_posts.contains(&post_id)
                            {
                                self.new_posts.push(post_id);
                            }
                        }
                        self.known_seq = Some(max.map_or(known, |m| m.max(known)));
                    }
                }
            }
            FeedAction::Queued(post) => {
                if !self.pending.iter().any(|p| p.local_id == post.local_id) {
                    self.pending.push(post);
                }
            }
            FeedAction::PendingLoaded(posts) => {
                for post in posts {
                    if !self.pending.iter().any(|p| p.local_id == post.local_id) {
                        self.pending.push(post);
                    }
                }
            }
            FeedAction::Posted { local_id, post } => {
                if let Some(local_id) = local_id {
                    self.pending.retain(|p| p.local_id != local_id);
                }
                if !self.items.iter().any(|i| i.post.id == post.id) {
                    self.items.insert(0, own_item(post));
                }
            }
            FeedAction::Liked {
                post_id,
                liked,
                likes,
            } => {
                let posts = self
                    .items
                    .iter_mut()
                    .map(|i| &mut i.post)
                    .chain(self.profile.iter_mut().flat_map(|p| p.posts.iter_mut()));
                for post in posts.filter(|p| p.id == post_id) {
                    post.liked = liked;
                    post.likes = likes;
                }
            }
            FeedAction::ProfileLoaded(profile) => self.profile = Some(profile),
            FeedAction::ProfileClosed => self.profile = None,
            FeedAction::Followed {
                user_id,
                followed,
                followers,
            } => {
                if let Some(profile) = self.profile.as_mut().filter(|p| p.user_id == user_id) {
                    profile.followed = followed;
                    profile.followers = followers;
                }
            }
        }
        self
    }
}

impl Reducible for FeedModel {
    type Action = FeedAction;

    fn reduce(self: Rc<Self>, action: FeedAction) -> Rc<Self> {
        Rc::new((*self).clone().reduce(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(id: &str) -> FeedPost {
        FeedPost {
            id: id.into(),
            author_id: "a".into(),
            author_name: "alice".into(),
            text: format!("post {id}"),
            reply_to: None,
            created_at_ms: 0,
            likes: 0,
            replies: 0,
            liked: false,
        }
    }

    fn item(id: &str) -> FeedItem {
        FeedItem {
            post: post(id),
            reasons: vec![],
        }
    }

    fn page(ids: &[&str], next: Option<&str>) -> FeedPage {
        FeedPage {
            items: ids.iter().map(|id| item(id)).collect(),
            next_cursor: next.map(str::to_owned),
        }
    }

    #[test]
    fn pages_append_without_duplicates() {
        let m = FeedModel::default()
            .reduce(FeedAction::Loaded {
                page: page(&["3", "2"], Some("c")),
                append: false,
            })
            .reduce(FeedAction::Loaded {
                page: page(&["2", "1"], None),
                append: true,
            });
        let ids: Vec<&str> = m.items.iter().map(|i| i.post.id.as_str()).collect();
        assert_eq!(ids, ["3", "2", "1"]);
        assert_eq!(m.next_cursor, None);
    }

    #[test]
    fn the_banner_counts_news_after_the_baseline_and_resets_on_refresh() {
        let m = FeedModel::default()
            .reduce(FeedAction::Loaded {
                page: page(&["1"], None),
                append: false,
            })
            // Replayed at subscription: the baseline.
            .reduce(FeedAction::Announced(vec![(4, "0".into())]))
            .reduce(FeedAction::Announced(vec![
                (4, "0".into()),
                (5, "7".into()),
            ]))
            .reduce(FeedAction::Announced(vec![
                (5, "7".into()),
                (6, "1".into()),
            ]));
        assert_eq!(m.new_posts, ["7"], "a shown post is not news, nor a repeat");
        assert_eq!(banner(m.new_posts.len()).as_deref(), Some("1 new post"));
        let m = m.reduce(FeedAction::Announced(vec![(7, "8".into())]));
        assert_eq!(banner(m.new_posts.len()).as_deref(), Some("2 new posts"));
        let m = m.reduce(FeedAction::Loaded {
            page: page(&["8", "7", "1"], None),
            append: false,
        });
        assert!(m.new_posts.is_empty());
        assert_eq!(banner(0), None);
    }

    #[test]
    fn pending_posts_stay_until_the_server_took_them() {
        let pending = PendingPost {
            local_id: "l1".into(),
            text: "offline".into(),
            reply_to: None,
        };
        let m = FeedModel::default()
            .reduce(FeedAction::Queued(pending.clone()))
            .reduce(FeedAction::PendingLoaded(vec![pending.clone()]));
        assert_eq!(m.pending.len(), 1);
        let m = m.reduce(FeedAction::Posted {
            local_id: Some("l1".into()),
            post: post("9"),
        });
        assert!(m.pending.is_empty());
        assert_eq!(m.items[0].post.id, "9");
        assert_eq!(m.items[0].reasons[0].code, "yours");
    }

    #[test]
    fn the_cache_shows_only_when_nothing_else_is_shown() {
        let m = FeedModel::default().reduce(FeedAction::Cached(vec![item("1"), item("1")]));
        assert!(m.from_cache);
        assert_eq!(m.items.len(), 1);
        let m = FeedModel::default()
            .reduce(FeedAction::Loaded {
                page: page(&["2"], None),
                append: false,
            })
            .reduce(FeedAction::Cached(vec![item("1")]));
        assert!(!m.from_cache);
        assert_eq!(m.items[0].post.id, "2");
    }

    #[test]
    fn likes_and_follows_update_what_is_shown() {
        let m = FeedModel::default()
            .reduce(FeedAction::Loaded {
                page: page(&["1"], None),
                append: false,
            })
            .reduce(FeedAction::Liked {
                post_id: "1".into(),
                liked: true,
                likes: 3,
            });
        assert!(m.items[0].post.liked);
        assert_eq!(m.items[0].post.likes, 3);
    }
}
