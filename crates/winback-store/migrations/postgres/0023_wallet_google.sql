-- Google Wallet: the pass version last written to the pass's offer object (0: none yet). The
-- worker creates or updates the object while it is behind, as it pushes to Apple devices.
ALTER TABLE wallet_passes ADD COLUMN google_version BIGINT NOT NULL DEFAULT 0;
