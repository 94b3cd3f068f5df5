"""The pure core: values, classification, SLA and judgement, with an explicit ``now``; no I/O."""
