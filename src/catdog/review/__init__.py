"""`catdog review`: from what the audit found to a corrected labels file, on a local page or in one command.

    >>> with review_data("photos/", audit="audit/") as review:   # runs the audit if none is given
    ...     review.accept_suggestions()                          # or decide item by item, on the page
    ...     review.export("reviewed.csv")                        # catdog train --labels reviewed.csv

A review queues what to look at, most likely problems first (suspected label errors,
duplicates, outliers, skipped files; or, for a pool of unlabelled images and a run, the
images the run is least sure about), records every decision in an append-only file of its
own folder, and exports the labels they amount to. The images are only ever read.

- `queue.py`: the items of a review, from an audit and a scan, and the reason for each.
- `pool.py`: a pool of unlabelled images, queued by how unsure a run is of them.
- `decisions.py`: the append-only decisions file, and the labels it amounts to.
- `folder.py`: the review folder: what it reviews and what it keeps.
- `session.py`: `Review`, one open review: deciding, undoing, accepting suggestions, exporting.
- `app.py`: the page's web app, served like `catdog serve`.
"""

from catdog.review.session import Review, review_data, review_pool

__all__ = ["Review", "review_data", "review_pool"]
