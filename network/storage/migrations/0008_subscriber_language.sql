-- libhub schema 6: the language each subscriber reads (an ISO 639 code such as "en" or
-- "es", one of network/locale/), used for all their mail. A request carries the language
-- it was made in until it is confirmed. Everyone from before reads English, as they did.

ALTER TABLE subscribers ADD COLUMN language TEXT NOT NULL DEFAULT 'en';
ALTER TABLE subscribe_requests ADD COLUMN language TEXT NOT NULL DEFAULT 'en';
