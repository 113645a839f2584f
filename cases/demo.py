def cases_demo_seed(*, actor, now):
    return "pending"
