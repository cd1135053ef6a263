"""The coldbox (PSI "Tessie"-like line protocol): temperature, humidity, dry air, TECs."""
