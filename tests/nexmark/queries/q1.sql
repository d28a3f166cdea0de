-- q1, currency conversion (nexmark-flink's q1.sql, as a SELECT).
SELECT auction, bidder, 0.908 * price AS price, `dateTime`, extra FROM bid;
