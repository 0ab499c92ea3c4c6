"""``rlrf audit``: which cheap tricks beat an honest drawing under each profile, and an optimizer against it.

``generators`` builds honest corruptions and hack classes, ``run`` scores them through the real
``Pipeline``, ``optimize`` runs a black-box optimizer against a profile's reward, ``report`` writes HTML.
"""
