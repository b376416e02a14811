"""Notifications on request events: an outbox written with the state change (`outbox`), a sender
process that fans each event out to its recipients and delivers by e-mail and Standard Webhooks
(`sender`, `channels`, `signing`), and the operator's view of it all (`service`, `api`, `cli`)."""
