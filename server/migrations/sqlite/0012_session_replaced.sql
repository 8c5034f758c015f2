-- A session revoked because the same browser signed in or out gets the id of the session
-- that replaced it. For a short while afterwards a request still carrying the old token
-- (sent before the browser stored the new cookie) is refused with 401 session_replaced
-- instead of being handed a fresh guest cookie that would overwrite the new one.
ALTER TABLE sessions ADD COLUMN replaced_by TEXT;
