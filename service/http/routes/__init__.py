"""One router per concern: predict, health, model, metrics; the page and the offline API docs."""
