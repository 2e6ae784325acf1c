-- the version of the watcher that started the delegate (DelegateParams.watcherVersion); NULL
-- for a delegate run without a watcher, or registered before this column
ALTER TABLE delegates ADD COLUMN watcher_version TEXT;
