"""The project package owns no tables. This module exists so Django treats `backoffice` as an app
with models, which is what makes it receive post_migrate (role synchronisation after migrate)."""
