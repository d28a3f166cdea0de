-- YSB: views per campaign in 10 s tumbling windows. The window is assigned first (a
-- regular join cannot carry a time attribute), then joined with the campaign table.
SELECT c.campaign_id, w.window_start, w.window_end, COUNT(*) AS `views`
FROM (
    SELECT ad_id, window_start, window_end
    FROM TABLE(TUMBLE(TABLE ad_events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
    WHERE event_type = 'view'
) AS w
JOIN campaigns AS c ON w.ad_id = c.ad_id
GROUP BY c.campaign_id, w.window_start, w.window_end;
