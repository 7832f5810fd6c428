-- Noise monitors join the device kinds (domain/vocabulary.py DeviceKind; a test keeps this
-- list equal to the enum). Their readings use the existing noise_dba column. The window
-- views are rebuilt from the sensor-kind declarations by storage/windows.py after the
-- migrations, so this file drops none of them.
ALTER TABLE devices DROP CONSTRAINT IF EXISTS devices_kind_check;
ALTER TABLE devices ADD CONSTRAINT devices_kind_check
    CHECK (kind IN ('fume', 'dust', 'noise', 'cone_camera', 'drone'));
