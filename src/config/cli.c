/* being written */
#include "paramd/error.h"
