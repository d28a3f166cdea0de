-- YSB's inputs as `ysb --generate-to DIR` writes them (DIR is substituted by generate.sh):
-- ad events as JSON lines (event_time a string of epoch ms) and the ad → campaign table.
-- Watermarks trail the event time by 1 s, as brisk's job.
CREATE TABLE ad_events (
    user_id STRING,
    page_id STRING,
    ad_id STRING,
    ad_type STRING,
    event_type STRING,
    event_time STRING,
    ip_address STRING,
    ts AS TO_TIMESTAMP_LTZ(CAST(event_time AS BIGINT), 3),
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${DIR}/events.json', 'format' = 'json');
CREATE TABLE campaigns (
    ad_id STRING,
    campaign_id STRING
) WITH ('connector' = 'filesystem', 'path' = '${DIR}/campaigns.csv', 'format' = 'csv');
