/* A straggler's pacing: see pace.h. */
#include "pace.h"

void pd_cycles_add(pd_cycles *c, double t)
{
    c->t[c->n % PD_PACE_WINDOW] = t > 0 ? t : 0;
    c->n++;
}

static int cycles_held(const pd_cycles *c)
{
    return c->n < PD_PACE_WINDOW ? c->n : PD_PACE_WINDOW;
}

double pd_cycles_mean(const pd_cycles *c)
{
    int k = cycles_held(c);
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += c->t[i];
    return k ? sum / k : 0;
}

double pd_cycles_median(const pd_cycles *c)
{
    int k = cycles_held(c);
    double v[PD_PACE_WINDOW];
    for (int i = 0; i < k; i++) {   /* insertion sort of at most PD_PACE_WINDOW */
        int j = i;
        for (; j > 0 && v[j - 1] > c->t[i]; j--)
            v[j] = v[j - 1];
        v[j] = c->t[i];
    }
    if (k == 0)
        return 0;
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

void pd_pace_init(pd_pace *p, double factor, bool compute_only)
{
    *p = (pd_pace){.factor = factor > 1 ? factor : 1, .compute_only = compute_only};
}

double pd_pace_pad(pd_pace *p, double compute_s, double unslowed_s)
{
    p->budget = 0;
    if (p->factor <= 1)
        return 0;
    if (p->compute_only)
        return (p->factor - 1) * compute_s;
    double expect = pd_cycles_median(&p->own);
    p->budget = p->factor * (unslowed_s > 0 ? unslowed_s : expect);
    double pad = p->budget - expect + p->debt;
    return pad > 0 ? pad : 0;
}

void pd_pace_cycle(pd_pace *p, double cycle_s, double slept_s, double held_s)
{
    pd_cycles_add(&p->own, cycle_s - slept_s - held_s);
    if (p->budget > 0) {
        double cap = PD_PACE_DEBT * p->budget;
        p->debt += p->budget - (cycle_s - held_s);
        p->debt = p->debt > cap ? cap : p->debt < -cap ? -cap : p->debt;
    }
    p->budget = 0;
}
