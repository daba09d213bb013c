"""The way to the broker, shared by the beat, the worker's follow-ups and the API: connections
(Redis, Sentinel, RabbitMQ with confirms), routes, message frames, the bulk publisher."""
