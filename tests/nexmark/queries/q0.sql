-- q0, pass through (nexmark-flink's q0.sql, as a SELECT).
SELECT auction, bidder, price, `dateTime`, extra FROM bid;
