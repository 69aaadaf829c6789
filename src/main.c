/* paramd: being written */
#include "paramd/error.h"
int main(void) { return 0; }
