"""What the service does once a batch changed: the side effects, each on its own queue.

    changes       the change feed (a capped stream of announced transitions) and its reads
    dispatch      transitions -> handler jobs, in order, once each
    handler_runs  what each handler run did, for the dashboard
    forwarding    transitions -> Standard Webhooks messages to your services (bounded_post: one attempt)
    archiving     ended batches -> archive jobs; archive: the files written and verified
    alerts        failed work, stalled polling and spend -> one folded alert each

The reconcile only appends to the feed; these consume it, so none of them can delay it.
"""
