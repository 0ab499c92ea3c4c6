"""From untrusted model text to pixels: extract the SVG, check it against the policy, render it."""
