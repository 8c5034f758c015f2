//! The feed page (`/feed`).
//!
//! On open: the last feed kept in IndexedDB is shown at once (and stays when the
//! server cannot be reached), then the first page of the ranked feed replaces it. The
//! account's topic `user:<id>` announces new posts of followed accounts: they are
//! counted in the banner ("3 new posts"), and a click loads a fresh first page. A post
//! that cannot be sent (offline) is kept in IndexedDB and sent when the realtime
//! connection is back online. The demo switch signs in as a seeded account
//! (`meridian feed-seed`, password `feed-demo-password`).

use meridian_shared::api::Credentials;
use meridian_shared::feed::{FeedEvent, FeedItem, FeedPost, FeedProfile, NewPost, DEFAULT_PAGE};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::state::{banner, FeedAction, FeedModel, PendingPost};
use super::storage;
use crate::browser::{local_time_hh_mm, new_op_id};
use crate::net::http;
use crate::net::realtime::{ConnectionState, Realtime, RealtimeStatus, TopicView};
use crate::session::SessionState;

/// The password of the seeded demo accounts.
pub const DEMO_PASSWORD: &str = "feed-demo-password";
/// Demo accounts offered by the switch (`demo0` is followed by every seeded account).
pub const DEMO_ACCOUNTS: usize = 10;

/// New-post notices in a topic view: `(seq, post id)`.
pub fn notices(view: &TopicView) -> Vec<(u64, String)> {
    view.events
        .iter()
        .filter_map(|event| {
            match serde_json::from_value::<FeedEvent>(event.payload.clone()).ok()? {
                FeedEvent::NewPost { post_id, .. } => Some((event.seq, post_id)),
            }
        })
        .collect()
}

/// The text of the compose box (a `<textarea>`).
fn compose_text(node: &NodeRef) -> String {
    node.cast::<web_sys::HtmlTextAreaElement>()
        .map(|area| area.value())
        .unwrap_or_default()
}

fn clear_compose(node: &NodeRef) {
    if let Some(area) = node.cast::<web_sys::HtmlTextAreaElement>() {
        area.set_value("");
    }
}

/// The chosen demo account (a `<select>`).
fn selected(node: &NodeRef) -> String {
    node.cast::<web_sys::HtmlSelectElement>()
        .map(|select| select.value())
        .unwrap_or_default()
}

fn load_first_page(model: UseReducerDispatcher<FeedModel>, user_id: String) {
    model.dispatch(FeedAction::Loading);
    spawn_local(async move {
        match api::feed(None, DEFAULT_PAGE).await {
            Ok(page) => {
                let _ = storage::save_feed(&user_id, &page.items).await;
                model.dispatch(FeedAction::Loaded {
                    page,
                    append: false,
                });
            }
            Err(error) => {
                if let Ok(Some(items)) = storage::load_feed(&user_id).await {
                    model.dispatch(FeedAction::Cached(items));
                }
                model.dispatch(FeedAction::Failed(error.message()));
            }
        }
    });
}

fn send_post(
    model: UseReducerDispatcher<FeedModel>,
    user_id: String,
    pending: PendingPost,
    queued: bool,
) {
    spawn_local(async move {
        let body = NewPost {
            text: pending.text.clone(),
            reply_to: pending.reply_to.clone(),
        };
        match api::create_post(&body).await {
            Ok(post) => {
                if queued {
                    let _ = storage::remove_post(&pending.local_id).await;
                }
                model.dispatch(FeedAction::Posted {
                    local_id: Some(pending.local_id),
                    post,
                });
            }
            Err(error) if error.is_network() => {
                if !queued {
                    let _ = storage::queue_post(&user_id, &pending).await;
                }
                model.dispatch(FeedAction::Queued(pending));
            }
            Err(error) => {
                if queued {
                    let _ = storage::remove_post(&pending.local_id).await;
                }
                model.dispatch(FeedAction::Failed(error.message()));
            }
        }
    });
}

fn open_profile(model: UseReducerDispatcher<FeedModel>, user_id: String) {
    spawn_local(async move {
        match api::profile(&user_id).await {
            Ok(profile) => model.dispatch(FeedAction::ProfileLoaded(profile)),
            Err(error) => model.dispatch(FeedAction::Failed(error.message())),
        }
    });
}

#[derive(Properties, PartialEq)]
struct PostViewProps {
    post: FeedPost,
    #[prop_or_default]
    reasons: Option<Vec<meridian_shared::feed::FeedReason>>,
    on_like: Callback<(String, bool)>,
    on_reply: Callback<FeedPost>,
    on_author: Callback<String>,
}

#[component]
fn PostView(props: &PostViewProps) -> Html {
    let post = &props.post;
    let like = {
        let on_like = props.on_like.clone();
        let id = post.id.clone();
        let liked = post.liked;
        Callback::from(move |_| on_like.emit((id.clone(), !liked)))
    };
    let reply = {
        let on_reply = props.on_reply.clone();
        let post = post.clone();
        Callback::from(move |_| on_reply.emit(post.clone()))
    };
    let author = {
        let on_author = props.on_author.clone();
        let id = post.author_id.clone();
        Callback::from(move |_| on_author.emit(id.clone()))
    };
    html! {
        <article class="feed-post" data-testid="feed-item" data-post-id={post.id.clone()}>
            <header class="feed-post-head">
                <button class="feed-author link" data-testid="feed-author" onclick={author}>
                    { &post.author_name }
                </button>
                <span class="muted">{ local_time_hh_mm(post.created_at_ms) }</span>
                if post.reply_to.is_some() {
                    <span class="muted">{ "· reply" }</span>
                }
            </header>
            <p class="feed-post-text" data-testid="feed-item-text">{ &post.text }</p>
            if let Some(reasons) = &props.reasons {
                <ul class="feed-reasons" data-testid="feed-reasons">
                    { for reasons.iter().map(|r| html! {
                        <li class="feed-reason" data-code={r.code.clone()}>{ &r.detail }</li>
                    }) }
                </ul>
            }
            <footer class="feed-post-actions">
                <button class={classes!("button", "button-ghost", post.liked.then_some("liked"))}
                        data-testid="feed-like" onclick={like}>
                    { if post.liked { "♥ " } else { "♡ " } }{ post.likes }
                </button>
                <button class="button button-ghost" data-testid="feed-reply" onclick={reply}>
                    { format!("Reply ({})", post.replies) }
                </button>
            </footer>
        </article>
    }
}

#[component]
pub fn FeedPage() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let realtime = use_context::<Realtime>();
    let status = use_context::<RealtimeStatus>();
    let model = use_reducer_eq(FeedModel::default);
    let replying = use_state(|| None::<FeedPost>);
    let compose_ref = use_node_ref();
    let demo_ref = use_node_ref();
    let user_id = session.user_id().map(str::to_owned);

    // Load the feed (and the pending posts) for the account.
    {
        let model = model.dispatcher();
        use_effect_with(user_id.clone(), move |user_id| {
            if let Some(user_id) = user_id.clone() {
                let cached = model.clone();
                let uid = user_id.clone();
                spawn_local(async move {
                    if let Ok(Some(items)) = storage::load_feed(&uid).await {
                        cached.dispatch(FeedAction::Cached(items));
                    }
                    if let Ok(pending) = storage::pending_posts(&uid).await {
                        cached.dispatch(FeedAction::PendingLoaded(pending));
                    }
                });
                load_first_page(model, user_id);
            }
        });
    }

    // New-post notices on the account's topic.
    {
        let model = model.dispatcher();
        use_effect_with(
            (user_id.clone(), realtime.clone()),
            move |(user_id, realtime)| {
                let watch = match (user_id, realtime) {
                    (Some(user_id), Some(realtime)) => Some(realtime.watch(
                        &format!("user:{user_id}"),
                        false,
                        Callback::from(move |view: TopicView| {
                            if view.subscribed {
                                model.dispatch(FeedAction::Announced(notices(&view)));
                            }
                        }),
                    )),
                    _ => None,
                };
                move || drop(watch)
            },
        );
    }

    // Back online: send the posts composed offline.
    let online = status
        .as_ref()
        .is_some_and(|s| s.state == ConnectionState::Online);
    {
        let dispatcher = model.dispatcher();
        let pending = model.pending.clone();
        use_effect_with(
            (online, pending.len(), user_id.clone()),
            move |(online, _, user_id)| {
                if let (true, Some(user_id)) = (*online, user_id.clone()) {
                    for post in pending {
                        send_post(dispatcher.clone(), user_id.clone(), post, true);
                    }
                }
            },
        );
    }

    let Some(me) = user_id.clone() else {
        return html! {
            <section class="page feed-page" data-testid="feed-page">
                <h1>{ "News feed" }</h1>
                <p class="muted" data-testid="feed-signed-out">
                    { "Sign in (or sign up) to read your feed, or use a demo account of the seeded graph." }
                </p>
                { demo_switch(&demo_ref, realtime.clone()) }
            </section>
        };
    };

    let on_post = {
        let dispatcher = model.dispatcher();
        let compose_ref = compose_ref.clone();
        let replying = replying.clone();
        let me = me.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let text = compose_text(&compose_ref);
            if let Err(message) = meridian_shared::feed::check_post_text(&text) {
                dispatcher.dispatch(FeedAction::Failed(message.to_owned()));
                return;
            }
            let pending = PendingPost {
                local_id: new_op_id(),
                text,
                reply_to: replying.as_ref().map(|p| p.id.clone()),
            };
            clear_compose(&compose_ref);
            replying.set(None);
            send_post(dispatcher.clone(), me.clone(), pending, false);
        })
    };
    let on_like = {
        let dispatcher = model.dispatcher();
        Callback::from(move |(post_id, like): (String, bool)| {
            let dispatcher = dispatcher.clone();
            spawn_local(async move {
                match api::set_like(&post_id, like).await {
                    Ok(state) => dispatcher.dispatch(FeedAction::Liked {
                        post_id: state.post_id,
                        liked: state.liked,
                        likes: state.likes,
                    }),
                    Err(error) => dispatcher.dispatch(FeedAction::Failed(error.message())),
                }
            });
        })
    };
    let on_reply = {
        let replying = replying.clone();
        let compose_ref = compose_ref.clone();
        Callback::from(move |post: FeedPost| {
            replying.set(Some(post));
            if let Some(element) = compose_ref.cast::<web_sys::HtmlElement>() {
                let _ = element.focus();
            }
        })
    };
    let on_author = {
        let dispatcher = model.dispatcher();
        Callback::from(move |user_id: String| open_profile(dispatcher.clone(), user_id))
    };
    let on_banner = {
        let dispatcher = model.dispatcher();
        let me = me.clone();
        Callback::from(move |_| load_first_page(dispatcher.clone(), me.clone()))
    };
    let on_more = {
        let dispatcher = model.dispatcher();
        let cursor = model.next_cursor.clone();
        Callback::from(move |_| {
            let Some(cursor) = cursor.clone() else { return };
            let dispatcher = dispatcher.clone();
            dispatcher.dispatch(FeedAction::Loading);
            spawn_local(async move {
                match api::feed(Some(&cursor), DEFAULT_PAGE).await {
                    Ok(page) => dispatcher.dispatch(FeedAction::Loaded { page, append: true }),
                    Err(error) => dispatcher.dispatch(FeedAction::Failed(error.message())),
                }
            });
        })
    };
    let post_view = |item: &FeedItem| {
        html! {
            <PostView key={item.post.id.clone()} post={item.post.clone()}
                reasons={Some(item.reasons.clone())}
                on_like={on_like.clone()} on_reply={on_reply.clone()} on_author={on_author.clone()} />
        }
    };

    html! {
        <section class="page feed-page" data-testid="feed-page">
            <div class="feed-top">
                <h1>{ "News feed" }</h1>
                { demo_switch(&demo_ref, realtime.clone()) }
            </div>
            <form class="card feed-compose" onsubmit={on_post}>
                if let Some(post) = &*replying {
                    <p class="muted" data-testid="feed-replying">
                        { format!("Replying to {}: “{}”", post.author_name, post.text) }
                        <button type="button" class="button button-ghost"
                            onclick={{ let replying = replying.clone(); Callback::from(move |_| replying.set(None)) }}>
                            { "Cancel" }
                        </button>
                    </p>
                }
                <textarea ref={compose_ref} data-testid="feed-compose" name="text" maxlength="500"
                    placeholder="What is happening?" rows="2" />
                <button type="submit" class="button button-primary" data-testid="feed-post-button">{ "Post" }</button>
            </form>
            if !model.pending.is_empty() {
                <ul class="feed-pending" data-testid="feed-pending">
                    { for model.pending.iter().map(|p| html! {
                        <li class="muted">{ format!("Waiting to send: {}", p.text) }</li>
                    }) }
                </ul>
            }
            if let Some(text) = banner(model.new_posts.len()) {
                <button class="feed-banner button" data-testid="feed-banner" onclick={on_banner}>{ text }</button>
            }
            if model.from_cache {
                <p class="notice" data-testid="feed-offline">{ "Offline: showing the last feed kept on this device." }</p>
            }
            if let Some(error) = &model.error {
                <p class="error" data-testid="feed-error">{ error }</p>
            }
            if let Some(profile) = &model.profile {
                { profile_panel(profile, &me, model.dispatcher(), &post_view) }
            }
            <div class="feed-list" data-testid="feed-list">
                if model.items.is_empty() && !model.loading {
                    <p class="muted" data-testid="feed-empty">{ "Nothing here yet: follow someone, or post." }</p>
                }
                { for model.items.iter().map(post_view) }
            </div>
            if model.next_cursor.is_some() {
                <button class="button" data-testid="feed-more" onclick={on_more}>{ "More" }</button>
            }
        </section>
    }
}

fn profile_panel(
    profile: &FeedProfile,
    me: &str,
    dispatcher: UseReducerDispatcher<FeedModel>,
    post_view: &dyn Fn(&FeedItem) -> Html,
) -> Html {
    let follow = {
        let dispatcher = dispatcher.clone();
        let user_id = profile.user_id.clone();
        let follow = !profile.followed;
        Callback::from(move |_| {
            let dispatcher = dispatcher.clone();
            let user_id = user_id.clone();
            spawn_local(async move {
                match api::set_follow(&user_id, follow).await {
                    Ok(state) => dispatcher.dispatch(FeedAction::Followed {
                        user_id: state.user_id,
                        followed: state.followed,
                        followers: state.followers,
                    }),
                    Err(error) => dispatcher.dispatch(FeedAction::Failed(error.message())),
                }
            });
        })
    };
    let close = Callback::from(move |_| dispatcher.dispatch(FeedAction::ProfileClosed));
    html! {
        <aside class="card feed-profile" data-testid="feed-profile" data-user-id={profile.user_id.clone()}>
            <header class="feed-post-head">
                <h2 data-testid="feed-profile-name">{ &profile.username }</h2>
                <button class="button button-ghost" onclick={close}>{ "Close" }</button>
            </header>
            <p class="muted" data-testid="feed-profile-counts">
                { format!("{} followers · {} following · {} posts", profile.followers, profile.following, profile.posts_count) }
            </p>
            if profile.user_id != me {
                <button class="button button-primary" data-testid="feed-follow" onclick={follow}>
                    { if profile.followed { "Unfollow" } else { "Follow" } }
                </button>
            }
            { for profile.posts.iter().map(|post| post_view(&FeedItem { post: post.clone(), reasons: vec![] })) }
        </aside>
    }
}

fn demo_switch(demo_ref: &NodeRef, realtime: Option<Realtime>) -> Html {
    let onclick = {
        let demo_ref = demo_ref.clone();
        Callback::from(move |_| {
            let username = selected(&demo_ref);
            let realtime = realtime.clone();
            spawn_local(async move {
                let credentials = Credentials {
                    username,
                    password: DEMO_PASSWORD.to_owned(),
                };
                if let Ok(me) = http::sign_in(&credentials).await {
                    if let Some(realtime) = &realtime {
                        realtime.session_changed(me);
                    }
                }
            });
        })
    };
    html! {
        <div class="feed-demo" data-testid="feed-demo">
            <label>
                { "Demo account " }
                <select ref={demo_ref.clone()} data-testid="feed-demo-select">
                    { for (0..DEMO_ACCOUNTS).map(|n| html! {
                        <option value={format!("demo{n}")}>{ format!("demo{n}") }</option>
                    }) }
                </select>
            </label>
            <button class="button button-ghost" data-testid="feed-demo-signin" {onclick}>{ "Switch" }</button>
        </div>
    }
}
