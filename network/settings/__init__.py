"""Settings: one TOML file validated once into frozen dataclasses; secrets from the environment."""
