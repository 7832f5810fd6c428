-- Windowed means of readings that rules use. On plain PostgreSQL these are views over
-- date_bin; when TimescaleDB is present storage/timescale.py replaces them with continuous
-- aggregates of the same name and columns (real-time, so recent data is included).

CREATE VIEW readings_10min AS
SELECT device_id,
       date_bin('10 minutes', ts, TIMESTAMPTZ '2000-01-01') AS bucket,
       avg(fume_mg_m3)  AS fume_mean,
       max(fume_mg_m3)  AS fume_max,
       avg(pm10_ug_m3)  AS pm10_mean,
       avg(pm25_ug_m3)  AS pm25_mean,
       count(*)         AS n
FROM readings GROUP BY 1, 2;

CREATE VIEW readings_15min AS
SELECT device_id,
       date_bin('15 minutes', ts, TIMESTAMPTZ '2000-01-01') AS bucket,
       avg(fume_mg_m3)  AS fume_mean,
       max(fume_mg_m3)  AS fume_max,
       avg(pm10_ug_m3)  AS pm10_mean,
       avg(pm25_ug_m3)  AS pm25_mean,
       count(*)         AS n
FROM readings GROUP BY 1, 2;

CREATE VIEW readings_hourly AS
SELECT device_id,
       date_bin('1 hour', ts, TIMESTAMPTZ '2000-01-01') AS bucket,
       avg(fume_mg_m3)  AS fume_mean,
       max(fume_mg_m3)  AS fume_max,
       avg(pm10_ug_m3)  AS pm10_mean,
       avg(pm25_ug_m3)  AS pm25_mean,
       count(*)         AS n
FROM readings GROUP BY 1, 2;
