"""Local HTTP servers that speak the APIs of services that cannot run here (Sentry SaaS, GitHub)."""
