"""Forms of the payment screens, one module per screen."""
