//! The handlers against recorded Docker request bodies, with a fake switchd.
