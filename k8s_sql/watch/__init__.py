"""Watching the revision log: the hub that fans changes out, the follower that feeds it, and
the feed that replays one watcher's history before it joins the live flow."""
