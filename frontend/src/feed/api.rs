//! The news feed's API (`/api/feed`), typed: every call returns `Result<T, HttpError>`
//! as the helpers of [`crate::net::http`] do.

use gloo_net::http::Request;
use meridian_shared::feed::{FeedPage, FeedPost, FeedProfile, FollowState, LikeState, NewPost};

use crate::net::http::{path_segment, send, HttpError};

/// The path of a feed page: the first without a cursor.
pub fn feed_path(cursor: Option<&str>, limit: usize) -> String {
    match cursor {
        Some(cursor) => format!("/api/feed?limit={limit}&cursor={}", path_segment(cursor)),
        None => format!("/api/feed?limit={limit}"),
    }
}

/// `GET /api/feed`.
pub async fn feed(cursor: Option<&str>, limit: usize) -> Result<FeedPage, HttpError> {
    send(Request::get(&feed_path(cursor, limit)), None::<&()>).await
}

/// `POST /api/feed/posts`.
pub async fn create_post(post: &NewPost) -> Result<FeedPost, HttpError> {
    send(Request::post("/api/feed/posts"), Some(post)).await
}

/// `PUT` or `DELETE /api/feed/follows/{user_id}`.
pub async fn set_follow(user_id: &str, follow: bool) -> Result<FollowState, HttpError> {
    let path = format!("/api/feed/follows/{}", path_segment(user_id));
    let request = if follow {
        Request::put(&path)
    } else {
        Request::delete(&path)
    };
    send(request, None::<&()>).await
}

/// `PUT` or `DELETE /api/feed/posts/{id}/like`.
pub async fn set_like(post_id: &str, like: bool) -> Result<LikeState, HttpError> {
    let path = format!("/api/feed/posts/{}/like", path_segment(post_id));
    let request = if like {
        Request::put(&path)
    } else {
        Request::delete(&path)
    };
    send(request, None::<&()>).await
}

/// `GET /api/feed/users/{id}`.
pub async fn profile(user_id: &str) -> Result<FeedProfile, HttpError> {
    send(
        Request::get(&format!("/api/feed/users/{}", path_segment(user_id))),
        None::<&()>,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_one_query_value() {
        assert_eq!(feed_path(None, 20), "/api/feed?limit=20");
        assert_eq!(
            feed_path(Some("12.20"), 20),
            "/api/feed?limit=20&cursor=12.20"
        );
    }
}
