-- Flink's group-window functions, and the COUNT_DISTINCT and LISTAGG aliases.
SELECT symbol,
       TUMBLE_START(ts, INTERVAL '10' SECOND) AS window_start,
       TUMBLE_END(ts, INTERVAL '10' SECOND) AS window_end,
       COUNT(*) AS trades,
       COUNT_DISTINCT(price) AS prices,
       LISTAGG(qty) AS sizes
FROM ticks
GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), symbol
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s'
);
